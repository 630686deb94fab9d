// Package api is the api role (dispatcher-api): the HTTP API on 7445 over
// the same control operations as the CLI. Its endpoints arrive with the API
// issue; until then the role only answers --version and --help.
package api
