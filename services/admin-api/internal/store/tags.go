package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
)

// Tag is one tag of one entity, as Kong's /tags lists them.
type Tag struct {
	EntityName string `json:"entity_name"`
	EntityID   string `json:"entity_id"`
	Tag        string `json:"tag"`
}

// Tags returns up to size (tag, entity) pairs of every entity type after
// the offset token, ordered by tag, type and id (bytewise), only those of
// tag when it is not "", and the token of the next page ("" when none).
func (s *Store) Tags(ctx context.Context, tag string, size int, offset string) ([]Tag, string, error) {
	parts := make([]string, 0, len(s.types))
	for _, t := range s.types {
		parts = append(parts, `SELECT '`+t.Name+`'::text AS entity_name, id::text AS entity_id, tg.tag AS tag FROM `+t.Name+
			` CROSS JOIN LATERAL jsonb_array_elements_text(CASE WHEN jsonb_typeof(body->'tags') = 'array' THEN body->'tags' ELSE '[]'::jsonb END) AS tg(tag)`)
	}
	q := `SELECT entity_name, entity_id, tag FROM (` + strings.Join(parts, " UNION ALL ") + `) AS tags`
	var where []string
	var args []any
	if tag != "" {
		where = append(where, "tag = ?")
		args = append(args, tag)
	}
	if offset != "" {
		var after Tag
		b, err := base64.RawURLEncoding.DecodeString(offset)
		if err != nil || json.Unmarshal(b, &after) != nil || !IsUUID(after.EntityID) {
			return nil, "", ErrOffset
		}
		where = append(where, `(tag COLLATE "C", entity_name COLLATE "C", entity_id COLLATE "C") > (? COLLATE "C", ? COLLATE "C", ? COLLATE "C")`)
		args = append(args, after.Tag, after.EntityName, after.EntityID)
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += ` ORDER BY tag COLLATE "C", entity_name COLLATE "C", entity_id COLLATE "C" LIMIT ?`
	args = append(args, size+1)
	var rows []Tag
	if err := s.db.WithContext(ctx).Raw(q, args...).Scan(&rows).Error; err != nil {
		return nil, "", translate("tags", err)
	}
	next := ""
	if len(rows) > size {
		rows = rows[:size]
		b, _ := json.Marshal(rows[size-1])
		next = base64.RawURLEncoding.EncodeToString(b)
	}
	if rows == nil {
		rows = []Tag{}
	}
	return rows, next, nil
}

// GetBy returns the entity of t whose unique column (one of t.Columns)
// has value; ErrNotFound when none.
func (s *Store) GetBy(ctx context.Context, t *entity.Type, column, value string) (map[string]any, error) {
	if !slices.Contains(t.Columns, column) {
		return nil, ErrNotFound
	}
	var bodies []string
	if err := s.db.WithContext(ctx).Raw(`SELECT body::text FROM `+t.Name+` WHERE `+column+` = ?`, value).Scan(&bodies).Error; err != nil {
		return nil, translate(t.Name, err)
	}
	if len(bodies) == 0 {
		return nil, ErrNotFound
	}
	return entity.Decode([]byte(bodies[0]))
}
