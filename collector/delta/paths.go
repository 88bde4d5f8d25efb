package delta

import (
	"fmt"
	"net/url"
	"strings"
)

// Paths in add and remove actions are RFC 2396 URIs, relative to the table
// root or absolute, "which need to be decoded to get the data file path"
// (PROTOCOL.md). Partition directories are named the Hive way (Spark's
// ExternalCatalogUtils.escapePathName): col=value with the characters below
// escaped as %XX. So a file in the partition device="a:b c" lies in the
// directory `device=a%3Ab c` and its add.path is `device=a%253Ab%20c/…`.

// hiveEscaped reports whether Hive (and Spark, Delta) escape c in a
// partition directory name.
func hiveEscaped(c byte) bool {
	if c < 0x20 || c == 0x7f {
		return true
	}
	return strings.IndexByte("\"#%'*/:=?\\{[]^", c) >= 0
}

// HivePartitionDir returns the directory name of a partition column's
// value: col=value, each escaped as Hive escapes partition paths.
func HivePartitionDir(col, value string) string {
	return hiveEscape(col) + "=" + hiveEscape(value)
}

func hiveEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if hiveEscaped(c) {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// EncodePath URI-encodes a data file's path relative to the table root (a
// physical object name below the table) for add and remove actions.
func EncodePath(rel string) string {
	parts := strings.Split(rel, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// CanonicalPath decodes an action's path into the form paths are compared
// in: for a relative path, the data file's object name relative to the
// table root (what EncodePath encodes); for an absolute one, the decoded
// URI ("file:/x", "file:///x" and "/x" are all "/x"; other schemes keep
// scheme and host). Two actions name the same file exactly when their
// canonical paths are equal.
func CanonicalPath(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("%w: empty file path", ErrCorruptLog)
	}
	if !isAbsolute(p) {
		rel, err := url.PathUnescape(p)
		if err != nil {
			return "", fmt.Errorf("%w: file path %q: %v", ErrCorruptLog, p, err)
		}
		return rel, nil
	}
	u, err := url.Parse(p)
	if err != nil {
		return "", fmt.Errorf("%w: file path %q: %v", ErrCorruptLog, p, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "", "file":
		return u.Path, nil
	}
	host := u.Host
	if u.User != nil {
		host = u.User.String() + "@" + host
	}
	return strings.ToLower(u.Scheme) + "://" + host + u.Path, nil
}

// isAbsolute reports whether an action's path is absolute: it starts with
// '/' or with a URI scheme ("file:", "abfss:", ...).
func isAbsolute(p string) bool {
	if strings.HasPrefix(p, "/") {
		return true
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return true
		default:
			return false
		}
	}
	return false
}
