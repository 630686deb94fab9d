package exec

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// The agent's own identity; tests replace these to act as a non-root agent.
var (
	geteuid = os.Geteuid
	getegid = os.Getegid
)

// identity is who a script runs as.
type identity struct {
	cred *syscall.Credential // nil: as the agent
	home string              // HOME: the user's home directory, or "/"
	user string              // USER and LOGNAME; "" when the entry names no user
}

// lookupIdentity resolves an entry's user and group (names or numeric ids
// known to the system). Switching identity needs root; an agent that is not
// root can only run scripts as itself, so an entry naming anyone else is
// refused.
func lookupIdentity(userName, groupName string) (identity, error) {
	id := identity{home: "/"}
	if userName == "" && groupName == "" {
		return id, nil
	}
	euid, egid := geteuid(), getegid()
	uid, gid := uint32(euid), uint32(egid)
	groups := []uint32{}
	if userName != "" {
		u, err := lookupUser(userName)
		if err != nil {
			return id, err
		}
		if uid, err = parseID(u.Uid); err != nil {
			return id, fmt.Errorf("user %q: uid %q: %v", userName, u.Uid, err)
		}
		if gid, err = parseID(u.Gid); err != nil {
			return id, fmt.Errorf("user %q: gid %q: %v", userName, u.Gid, err)
		}
		id.user = u.Username
		if u.HomeDir != "" {
			id.home = u.HomeDir
		}
		if gids, err := u.GroupIds(); err == nil {
			for _, s := range gids {
				if n, err := parseID(s); err == nil {
					groups = append(groups, n)
				}
			}
		}
	}
	if groupName != "" {
		g, err := lookupGroup(groupName)
		if err != nil {
			return id, err
		}
		if gid, err = parseID(g.Gid); err != nil {
			return id, fmt.Errorf("group %q: gid %q: %v", groupName, g.Gid, err)
		}
	}
	if euid != 0 {
		if int(uid) == euid && int(gid) == egid {
			return id, nil // already who the entry asks for
		}
		return id, fmt.Errorf("cannot run as %s: the agent is not running as root (run the agent as root, or drop user/group from the scripts.conf entry)", who(userName, groupName))
	}
	id.cred = &syscall.Credential{
		Uid:         uid,
		Gid:         gid,
		Groups:      groups,
		NoSetGroups: userName == "", // a group alone keeps the agent's supplementary groups
	}
	return id, nil
}

func lookupUser(name string) (*user.User, error) {
	u, err := user.Lookup(name)
	if err != nil && isNumeric(name) {
		u, err = user.LookupId(name)
	}
	var unknown user.UnknownUserError
	var unknownID user.UnknownUserIdError
	switch {
	case errors.As(err, &unknown), errors.As(err, &unknownID):
		return nil, fmt.Errorf("unknown user %q", name)
	case err != nil:
		return nil, fmt.Errorf("look up user %q: %v", name, err)
	}
	return u, nil
}

func lookupGroup(name string) (*user.Group, error) {
	g, err := user.LookupGroup(name)
	if err != nil && isNumeric(name) {
		g, err = user.LookupGroupId(name)
	}
	var unknown user.UnknownGroupError
	var unknownID user.UnknownGroupIdError
	switch {
	case errors.As(err, &unknown), errors.As(err, &unknownID):
		return nil, fmt.Errorf("unknown group %q", name)
	case err != nil:
		return nil, fmt.Errorf("look up group %q: %v", name, err)
	}
	return g, nil
}

func who(userName, groupName string) string {
	switch {
	case groupName == "":
		return fmt.Sprintf("user %q", userName)
	case userName == "":
		return fmt.Sprintf("group %q", groupName)
	}
	return fmt.Sprintf("user %q and group %q", userName, groupName)
}

func isNumeric(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}
