package store

import "errors"

// Open returns the store dispatcher.conf names: files under stateDir when
// url (the `store` key) is empty. The PostgreSQL store is refused until it
// exists, rather than silently keeping state elsewhere.
func Open(url, stateDir string) (*Files, error) {
	if url != "" {
		return nil, errors.New("store: the PostgreSQL store is not available in this version; leave store empty to keep state in state_dir")
	}
	return NewFiles(stateDir), nil
}
