package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

var _ store.SessionLocks = (*Store)(nil)

// sessionPrefix starts the session names of this store.
const sessionPrefix = "pg:"

// sessionName names the session holding a run's locks: its holder key
// and the backend pid of its connection.
func sessionName(holder int64, backendPID uint32) string {
	return sessionPrefix + strconv.FormatInt(holder, 10) + ":" + strconv.FormatUint(uint64(backendPID), 10)
}

// parseSession reads a name of sessionName.
func parseSession(session string) (holder int64, backendPID uint32, err error) {
	rest, ok := strings.CutPrefix(session, sessionPrefix)
	h, p, ok2 := strings.Cut(rest, ":")
	if ok && ok2 {
		holder, err = strconv.ParseInt(h, 10, 64)
		if err == nil && holder > 0 {
			var pid uint64
			if pid, err = strconv.ParseUint(p, 10, 32); err == nil && pid > 0 {
				return holder, uint32(pid), nil
			}
		}
	}
	return 0, 0, fmt.Errorf("session %q is not one a PostgreSQL store names (pg:HOLDER:PID)", session)
}

// SessionAlive reports whether the session named session (AcquireSession,
// on any node) still holds its locks: whether pg_locks shows its holder
// key granted to its backend in this database. Once released, or once
// the session ended (the node killed, its connection cut), it does not.
func (s *Store) SessionAlive(session string) (bool, error) {
	holder, pid, err := parseSession(session)
	if err != nil {
		return false, err
	}
	const what = "check a run's lock session"
	var alive bool
	err = s.call(what, func(ctx context.Context, c *pgx.Conn) error {
		err := c.QueryRow(ctx, `WITH `+liveHolders+`
SELECT EXISTS (SELECT 1 FROM live WHERE live.holder = $1 AND live.pid = $2)`, holder, int64(pid)).Scan(&alive)
		if err != nil {
			return s.dbError(what, err)
		}
		return nil
	})
	return alive, err
}
