package declarative

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
)

// FormatVersions are the declarative formats deltaplane reads, as Kong
// 3.x: "1.1" and "2.1" are migrated to "3.0" when read as Kong does
// (kong/db/declarative/migrations/route_path.lua): the paths of routes,
// top-level and nested in top-level services, pass through migratePath
// (Item.load). Nothing else differs between the formats.
var FormatVersions = []string{"1.1", "2.1", FormatVersion}

// plainPath is Kong 2.x's test for a path that is not a regex.
var plainPath = regexp.MustCompile(`^[a-zA-Z0-9.\-_~/%]*$`)

var triplet = regexp.MustCompile(`%[0-9A-Fa-f]{2}`)

// migratePath is Kong's migrate_path_280_300: a plain path is normalized
// (entity.NormalizePath); any other is a regex in 2.x and becomes "~"
// followed by the path with its percent-encoded triplets decoded (reserved
// characters stay encoded, upper-cased; regex metacharacters are decoded
// escaped with a backslash).
func migratePath(p string) string {
	if plainPath.MatchString(p) {
		return entity.NormalizePath(p)
	}
	if strings.IndexByte(p, '%') >= 0 {
		p = triplet.ReplaceAllStringFunc(p, func(m string) string {
			n, _ := strconv.ParseUint(m[1:], 16, 8)
			c := byte(n)
			switch {
			case strings.IndexByte("!#$%&'()*+,/:;=?@[]", c) >= 0:
				return strings.ToUpper(m)
			case strings.IndexByte(".^-{}\\|", c) >= 0:
				return "\\" + string([]byte{c})
			}
			return string([]byte{c})
		})
	}
	return "~" + p
}
