package httplimittest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Exchange writes with write in the background (the server may answer
// before it has read everything) and reads one answer from conn, giving up
// after 20 s. The answer's body is read whole and closed.
func Exchange(conn net.Conn, write func(io.Writer)) (*http.Response, []byte, error) {
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	go write(conn)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// WriteChunked writes a chunked body of n chunks of 64 KiB of "x" and the
// last chunk, stopping at the first write error (the server closed).
func WriteChunked(w io.Writer, n int) {
	chunk := fmt.Appendf(nil, "%x\r\n%s\r\n", 64<<10, bytes.Repeat([]byte("x"), 64<<10))
	for range n {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
	_, _ = io.WriteString(w, "0\r\n\r\n")
}

// IsClosed reports whether err is the server closing a connection.
func IsClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(fmt.Sprint(err), "connection reset")
}
