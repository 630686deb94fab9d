// Package backend opens the store dispatcher.conf names: the files store
// under state_dir when `store` is empty, the PostgreSQL store
// (roles/internal/store/postgres) for a postgres:// or postgresql:// URL.
// It is the one place that knows both, so that the store package and its
// implementations do not import each other.
//
// Errors never repeat the URL's password: the `store` value may hold one.
package backend
