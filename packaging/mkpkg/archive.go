package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// tarOptions say how entries are written.
type tarOptions struct {
	prefix  string // before every name: "./" for a .deb, "" for an .apk
	apkSums bool   // add the APK-TOOLS.checksum.SHA1 PAX record apk expects
	trailer bool   // end the archive; false leaves it open for concatenation
}

// writeTarGz writes es as a gzip-compressed tar, every entry root:root
// (numeric 0) and dated mtime.
func writeTarGz(es []entry, mtime time.Time, o tarOptions) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	for _, e := range es {
		name := o.prefix + e.name
		if e.name == "." {
			name = "."
		}
		h := &tar.Header{
			Name:    name,
			Mode:    int64(e.mode.Perm()),
			ModTime: mtime,
			Uname:   "root",
			Gname:   "root",
			Format:  tar.FormatUSTAR,
		}
		switch {
		case e.dir:
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		case e.link != "":
			h.Typeflag = tar.TypeSymlink
			h.Linkname = e.link
		default:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if o.apkSums && !e.dir {
			sum := sha1.Sum(e.data)
			if e.link != "" {
				sum = sha1.Sum([]byte(e.link))
			}
			h.Format = tar.FormatPAX
			h.PAXRecords = map[string]string{"APK-TOOLS.checksum.SHA1": hex.EncodeToString(sum[:])}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar %s: %w", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if o.trailer {
		err = tw.Close()
	} else {
		err = tw.Flush() // no end-of-archive blocks: the next stream continues it
	}
	if err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// arMember is one member of an ar archive.
type arMember struct {
	name string
	data []byte
}

// writeAr writes the common ar format dpkg reads: members dated mtime,
// owned by 0:0, mode 0644.
func writeAr(ms []arMember, mtime time.Time) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("!<arch>\n")
	for _, m := range ms {
		if len(m.name) > 16 {
			return nil, fmt.Errorf("ar member name %q is longer than 16 bytes", m.name)
		}
		fmt.Fprintf(&b, "%-16s%-12s%-6s%-6s%-8s%-10s`\n",
			m.name, strconv.FormatInt(mtime.Unix(), 10), "0", "0", "100644", strconv.Itoa(len(m.data)))
		b.Write(m.data)
		if len(m.data)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes(), nil
}
