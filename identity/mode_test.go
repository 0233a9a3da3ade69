package identity

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestLoadRefusesKeyOthersCanRead is the identity half of issue 11's
// finding 9: a key file that group or others may access is refused, with
// the chmod that fixes it, and is left as it was.
func TestLoadRefusesKeyOthersCanRead(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Unix permission bits")
	}
	content := validPEM(t)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620, 0o602, 0o660} {
		t.Run(fmt.Sprintf("%04o", mode), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil { // not subject to the umask
				t.Fatal(err)
			}
			_, err := Load(path)
			if !errors.Is(err, ErrKeyFileMode) || !errors.Is(err, ErrBadKeyFile) {
				t.Fatalf("Load = %v, want ErrKeyFileMode", err)
			}
			if want := "run: chmod 600 " + path; !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not say %q", err, want)
			}
			if b, _ := os.ReadFile(path); string(b) != content {
				t.Fatal("Load changed the refused file")
			}
			if err := os.Chmod(path, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(path); err != nil {
				t.Fatalf("after chmod 600: %v", err)
			}
		})
	}
	t.Run("0400", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "key")
		if err := os.WriteFile(path, []byte(content), 0o400); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); err != nil {
			t.Fatalf("owner-only read: %v", err)
		}
	})
}

func TestLoadRefusesHugeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, make([]byte, maxKeyFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); !errors.Is(err, ErrBadKeyFile) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Load = %v", err)
	}
}

func TestCreatedKeyIsOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "key")
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("created with mode %04o", fi.Mode().Perm())
	}
	if _, err := Load(path); err != nil {
		t.Fatalf("reload: %v", err)
	}
}
