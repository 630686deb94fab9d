package store

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
)

var bootID = sync.OnceValue(func() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
})

// processStart returns the boot id and start time (in clock ticks since
// boot, field 22 of /proc/PID/stat) of process pid, and whether it exists.
// When /proc cannot be read for another reason the process is taken to
// exist, with no start time.
func processStart(pid int) (start string, exists bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if os.IsNotExist(err) {
		return "", false
	}
	if err != nil {
		return "", true
	}
	// The command name (field 2) is in parentheses and may hold any
	// byte: the fields that follow start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", true
	}
	fields := strings.Fields(string(b[i+1:]))
	const starttime = 22 - 3 // fields[0] is field 3, the state
	if len(fields) <= starttime {
		return "", true
	}
	if fields[0] == "Z" || fields[0] == "X" { // a zombie has ended
		return "", false
	}
	return bootID() + ":" + fields[starttime], true
}
