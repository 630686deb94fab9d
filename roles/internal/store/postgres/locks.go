package postgres

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// Host:script locks. A run holds a connection of its own for as long as it
// holds locks; on it, a session advisory lock on a random 63-bit key (the
// holder) and a row of lock_holders per pair naming that key and the
// session (backend_pid). A row is a held lock while its session holds its
// holder key (pg_locks says so, to any user); when the session ends —
// release, a crash of the node, a killed connection — PostgreSQL drops the
// advisory lock and the row no longer counts. The primary key (host,
// script) is what keeps two holders of one pair apart.
//
// One advisory lock per run rather than one per pair: the server's lock
// table is shared by all sessions and holds about max_locks_per_transaction
// × max_connections locks (6,400 by default), fewer than one run over
// 10,000 agents would take.

// liveHolders is the CTE of the holder keys held right now in this
// database, with their sessions.
const liveHolders = `live AS MATERIALIZED (
	SELECT (l.classid::bigint << 32) | l.objid::bigint AS holder, l.pid
	FROM pg_locks l
	WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
		AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
)`

// Acquire takes the locks of keys (duplicates count once) without waiting
// for them. If any is held by another run, on any node, it takes none and
// returns a *store.LockConflictError listing every conflicting pair, in
// the order of keys. The locks are released by release (safe to call more
// than once), or by PostgreSQL when the holder's session ends.
func (s *Store) Acquire(h store.LockHolder, keys []store.LockKey) (release func(), err error) {
	release, _, err = s.AcquireSession(h, keys)
	return release, err
}

// AcquireSession is Acquire that also names the session holding the
// locks (store.SessionLocks): "pg:HOLDER:PID", the holder's advisory lock
// key and the backend pid of its connection, which SessionAlive looks up
// in pg_locks from any node.
func (s *Store) AcquireSession(h store.LockHolder, keys []store.LockKey) (release func(), session string, err error) {
	seen := make(map[store.LockKey]bool, len(keys))
	var uniq []store.LockKey
	for _, k := range keys {
		if k.Host == "" || k.Script == "" {
			return nil, "", fmt.Errorf("lock %q: empty host or script", k.String())
		}
		if !seen[k] {
			seen[k] = true
			uniq = append(uniq, k)
		}
	}
	if len(uniq) == 0 {
		return func() {}, "", nil
	}
	const what = "take locks"
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	c, err := s.pool.get(ctx, false)
	if err != nil {
		return nil, "", s.dbError(what, err)
	}
	holder, err := takeHolderKey(ctx, c)
	if err != nil {
		closeConn(c)
		return nil, "", s.dbError(what, err)
	}
	conflicts, err := s.insertHolders(ctx, c, holder, h, uniq)
	if err != nil || len(conflicts) > 0 {
		s.dropHolder(c, holder)
		if err != nil {
			return nil, "", err
		}
		return nil, "", &store.LockConflictError{Conflicts: conflicts}
	}
	var once sync.Once
	return func() { once.Do(func() { s.dropHolder(c, holder) }) }, sessionName(holder, c.PgConn().PID()), nil
}

// takeHolderKey takes a session advisory lock on a new random key.
func takeHolderKey(ctx context.Context, c *pgx.Conn) (int64, error) {
	for {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		key := int64(binary.BigEndian.Uint64(b[:]) >> 1)
		if key == 0 {
			continue
		}
		var ok bool
		if err := c.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil {
			return 0, err
		}
		if ok {
			return key, nil
		}
	}
}

// insertHolders writes the rows of keys for holder, replacing stale ones,
// and returns the pairs another live holder has, in the order of keys
// (and then has written nothing).
func (s *Store) insertHolders(ctx context.Context, c *pgx.Conn, holder int64, h store.LockHolder, keys []store.LockKey) ([]store.LockKey, error) {
	hosts := make([]string, len(keys))
	scripts := make([]string, len(keys))
	for i, k := range keys {
		hosts[i], scripts[i] = k.Host, k.Script
	}
	const what = "take locks"
	for attempt := 1; ; attempt++ {
		var conflicts []store.LockKey
		err := inTx(ctx, c, true, func(tx pgx.Tx) error {
			conflicts = nil
			if _, err := tx.Exec(ctx, `WITH `+liveHolders+`
DELETE FROM lock_holders h
USING unnest($1::text[], $2::text[]) AS k(host, script)
WHERE h.host = k.host AND h.script = k.script
	AND NOT EXISTS (SELECT 1 FROM live WHERE live.holder = h.holder AND live.pid = h.backend_pid)`, hosts, scripts); err != nil {
				return err
			}
			// In one order on every node, so that two runs taking
			// overlapping pairs wait for each other rather than deadlock.
			rows, err := tx.Query(ctx, `INSERT INTO lock_holders (host, script, holder, backend_pid, node, pid, reqid, username, started)
SELECT k.host, k.script, $3, pg_backend_pid(), $4, $5, $6, $7, $8
FROM unnest($1::text[], $2::text[]) AS k(host, script)
ORDER BY k.host COLLATE "C", k.script COLLATE "C"
ON CONFLICT (host, script) DO NOTHING
RETURNING host, script`, hosts, scripts, holder, s.node, h.PID, h.ReqID, h.User, h.Started.Format(time.RFC3339Nano))
			if err != nil {
				return err
			}
			taken, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.LockKey, error) {
				var k store.LockKey
				err := row.Scan(&k.Host, &k.Script)
				return k, err
			})
			if err != nil {
				return err
			}
			if len(taken) == len(keys) {
				return nil
			}
			got := make(map[store.LockKey]bool, len(taken))
			for _, k := range taken {
				got[k] = true
			}
			for _, k := range keys {
				if !got[k] {
					conflicts = append(conflicts, k)
				}
			}
			return own(&store.LockConflictError{Conflicts: conflicts}) // roll back
		})
		var conflict *ownError
		if errors.As(err, &conflict) {
			return conflicts, nil
		}
		switch code := sqlState(err); {
		case err == nil:
			return nil, nil
		case (code == codeDeadlock || code == codeSerialization) && attempt < 3:
			continue
		case code == codeLockNotAvailable:
			return nil, fmt.Errorf("take locks: another dispatcher node has been taking some of the same host:script locks for %s; try again: %w", lockWait, err)
		default:
			return nil, s.dbError(what, err)
		}
	}
}

// dropHolder removes holder's rows, unlocks its key and gives the
// connection back; on any failure it closes the connection, which
// releases the key all the same.
func (s *Store) dropHolder(c *pgx.Conn, holder int64) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := c.Exec(ctx, "DELETE FROM lock_holders WHERE holder = $1 AND backend_pid = pg_backend_pid()", holder)
	if err == nil {
		var ok bool
		err = c.QueryRow(ctx, "SELECT pg_advisory_unlock($1)", holder).Scan(&ok)
		if err == nil && !ok {
			err = errors.New("the session no longer held its lock")
		}
	}
	if err != nil && !c.IsClosed() {
		s.log.Warn("release host:script locks: closing their connection instead", zap.Error(err))
		closeConn(c)
	}
	s.pool.put(c, false) // closes it when broken
}

// ListLocks returns the locks held right now by any node, sorted by host
// and script, with the holder's details. LockInfo.Path is empty: there is
// no lock file.
func (s *Store) ListLocks() ([]store.LockInfo, error) {
	var locks []store.LockInfo
	var bad []string
	err := s.call("list locks", func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `WITH `+liveHolders+`
SELECT h.host, h.script, h.pid, h.reqid, h.username, h.started
FROM lock_holders h
WHERE EXISTS (SELECT 1 FROM live WHERE live.holder = h.holder AND live.pid = h.backend_pid)`)
		if err != nil {
			return s.dbError("list locks", err)
		}
		locks, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.LockInfo, error) {
			var l store.LockInfo
			var started string
			err := row.Scan(&l.Host, &l.Script, &l.PID, &l.ReqID, &l.User, &started)
			if err == nil {
				if l.Started, err = time.Parse(time.RFC3339Nano, started); err != nil {
					bad, err = append(bad, started), nil
				}
			}
			return l, err
		})
		if err != nil {
			return s.dbError("list locks", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		s.log.Warn("held locks with a start time that does not parse", zap.Strings("started", bad))
	}
	if len(locks) == 0 {
		return nil, nil
	}
	sort.Slice(locks, func(i, j int) bool {
		if locks[i].Host != locks[j].Host {
			return locks[i].Host < locks[j].Host
		}
		return locks[i].Script < locks[j].Script
	})
	return locks, nil
}
