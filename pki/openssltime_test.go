package pki_test

import (
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
)

func TestFormatOpenSSLTime(t *testing.T) {
	cet := time.FixedZone("CET", 3600)
	tests := []struct {
		in   time.Time
		want string
	}{
		{time.Date(2027, 6, 7, 16, 28, 0, 0, time.UTC), "Jun  7 16:28:00 2027 GMT"},
		{time.Date(2027, 12, 17, 1, 2, 3, 0, time.UTC), "Dec 17 01:02:03 2027 GMT"},
		{time.Date(2027, 1, 1, 0, 30, 0, 0, cet), "Dec 31 23:30:00 2026 GMT"},
		{time.Date(2030, 2, 1, 9, 5, 9, 999, time.UTC), "Feb  1 09:05:09 2030 GMT"},
	}
	for _, tt := range tests {
		got := pki.FormatOpenSSLTime(tt.in)
		if got != tt.want {
			t.Errorf("FormatOpenSSLTime(%v) = %q, want %q", tt.in, got, tt.want)
		}
		back, err := pki.ParseOpenSSLTime(got)
		if err != nil {
			t.Fatal(err)
		}
		if !back.Equal(tt.in.Truncate(time.Second)) || back.Location() != time.UTC {
			t.Errorf("ParseOpenSSLTime(%q) = %v, want %v in UTC", got, back, tt.in)
		}
	}
}

func TestParseOpenSSLTime(t *testing.T) {
	jun7 := time.Date(2027, 6, 7, 16, 28, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr string
	}{
		{in: "Jun  7 16:28:00 2027 GMT", want: jun7},
		{in: "Jun 7 16:28:00 2027 GMT", want: jun7},
		{in: "Jun 07 16:28:00 2027 GMT", want: jun7},
		{in: "  Jun  7 16:28:00 2027 GMT\n", want: jun7},
		{in: "notAfter=Jun  7 16:28:00 2027 GMT", want: jun7},
		{in: "notBefore=Jun  7 16:28:00 2027 GMT", want: jun7},
		{in: "Dec 17 01:02:03 2027 GMT", want: time.Date(2027, 12, 17, 1, 2, 3, 0, time.UTC)},
		{in: "Feb 29 00:00:00 2028 GMT", want: time.Date(2028, 2, 29, 0, 0, 0, 0, time.UTC)},
		{in: "", wantErr: `time "" is not in the openssl form`},
		{in: "2027-06-07T16:28:00Z", wantErr: "not in the openssl form"},
		{in: "Jun  7 16:28:00 2027", wantErr: "not in the openssl form"},
		{in: "Jun  7 16:28:00 2027 PST", wantErr: "not in the openssl form"},
		{in: "Jun 31 16:28:00 2027 GMT", wantErr: "not in the openssl form"},
		{in: "Feb 29 00:00:00 2027 GMT", wantErr: "not in the openssl form"},
		{in: "Jun  7 24:00:00 2027 GMT", wantErr: "not in the openssl form"},
		{in: "Jux  7 16:28:00 2027 GMT", wantErr: "not in the openssl form"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := pki.ParseOpenSSLTime(tt.in)
			wantErrContains(t, err, tt.wantErr)
			if !got.Equal(tt.want) {
				t.Fatalf("ParseOpenSSLTime(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzParseOpenSSLTime: a refusal is an error with a message and the zero
// time; an accepted time is in UTC, and its FormatOpenSSLTime form reads
// back as the same time and formats the same again.
func FuzzParseOpenSSLTime(f *testing.F) {
	for _, s := range []string{
		"Jun  7 16:28:00 2027 GMT", "Jun 7 16:28:00 2027 GMT", "notAfter=Dec 31 23:59:59 9999 GMT",
		"Jan  1 00:00:00 0000 GMT", "Feb 29 00:00:00 2028 GMT", "", "Jun  7", "Jun 07 1:2:3 2027 GMT",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := pki.ParseOpenSSLTime(s)
		if err != nil {
			if !tm.IsZero() || err.Error() == "" {
				t.Fatalf("refusal %v with time %v", err, tm)
			}
			return
		}
		if tm.Location() != time.UTC {
			t.Fatalf("ParseOpenSSLTime(%q) = %v, not in UTC", s, tm)
		}
		out := pki.FormatOpenSSLTime(tm)
		back, err := pki.ParseOpenSSLTime(out)
		if err != nil {
			t.Fatalf("ParseOpenSSLTime(%q) = %v, but its formatting %q does not parse: %v", s, tm, out, err)
		}
		if !back.Equal(tm) {
			t.Fatalf("%q → %v → %q → %v", s, tm, out, back)
		}
		if pki.FormatOpenSSLTime(back) != out {
			t.Fatalf("formatting is not stable for %q", s)
		}
	})
}
