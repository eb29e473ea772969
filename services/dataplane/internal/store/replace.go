package store

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// A resync writes the new configuration beside the live one, in chunks of
// their own transactions, and swaps it in with the position in one last
// transaction: bucketStaging holds a bucket named like bucketEntities
// while it is written, and the swap deletes the live bucket and moves the
// staged one to the top (bbolt renames a bucket only by moving it between
// parents). A crash before the swap leaves the live configuration and its
// position untouched; the staged part is dropped at the next Open or
// BeginReplace.
var bucketStaging = []byte("staging")

// replaceChunk is how many bytes of keys and values a Replacement hands to
// one bbolt transaction: bbolt holds a transaction's nodes and page
// buffers until it commits, so this bounds that memory whatever the
// configuration's size (a resync of 1M entities in one transaction held
// 602 MB of page buffers).
const replaceChunk = 4 << 20

// Replacement writes a whole new configuration without holding it in
// memory: Put the entities in ascending key order, then Commit (or Abort).
// Not safe for concurrent use.
type Replacement struct {
	s       *Bolt
	keys    [][]byte
	values  [][]byte
	bytes   int
	last    []byte
	n       int
	flushes int
	done    bool
}

// BeginReplace starts writing a configuration that will replace the
// stored one at Commit.
func (s *Bolt) BeginReplace() (*Replacement, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := dropStaging(tx); err != nil {
			return err
		}
		st, err := tx.CreateBucket(bucketStaging)
		if err != nil {
			return err
		}
		_, err = st.CreateBucket(bucketEntities)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("begin replace: %w", err)
	}
	return &Replacement{s: s}, nil
}

func dropStaging(tx *bolt.Tx) error {
	if tx.Bucket(bucketStaging) == nil {
		return nil
	}
	return tx.DeleteBucket(bucketStaging)
}

// Put adds one entity. Keys must come in strictly ascending order (each
// chunk then appends to the right edge of the tree: pages filled, none
// rewritten twice). The Replacement keeps value until its chunk is
// written: the caller must not modify it.
func (r *Replacement) Put(key string, value []byte) error {
	if r.done {
		return errors.New("replacement already ended")
	}
	k := []byte(key)
	if r.last != nil && string(k) <= string(r.last) {
		return fmt.Errorf("replace: key %q after %q: keys must ascend", key, r.last)
	}
	r.last = k
	r.keys = append(r.keys, k)
	r.values = append(r.values, value)
	r.bytes += len(k) + len(value)
	r.n++
	if r.bytes >= replaceChunk {
		return r.flush()
	}
	return nil
}

func (r *Replacement) flush() error {
	if len(r.keys) == 0 {
		return nil
	}
	err := r.s.db.Update(func(tx *bolt.Tx) error {
		b := staged(tx)
		if b == nil {
			return errors.New("staging bucket vanished")
		}
		b.FillPercent = 1 // append-only: full pages
		for i, k := range r.keys {
			if err := b.Put(k, r.values[i]); err != nil {
				return fmt.Errorf("store %s: %w", k, err)
			}
		}
		return nil
	})
	clear(r.keys)
	clear(r.values)
	r.keys, r.values, r.bytes = r.keys[:0], r.values[:0], 0
	r.flushes++
	if err != nil {
		return fmt.Errorf("replace: %w", err)
	}
	return nil
}

func staged(tx *bolt.Tx) *bolt.Bucket {
	st := tx.Bucket(bucketStaging)
	if st == nil {
		return nil
	}
	return st.Bucket(bucketEntities)
}

// Len is the number of entities Put so far.
func (r *Replacement) Len() int { return r.n }

// Chunks is the number of transactions the entities were written in so
// far (Commit writes the last one).
func (r *Replacement) Chunks() int { return r.flushes }

// Commit writes what is left, then makes the entities put the stored
// configuration and m its position, in one transaction.
func (r *Replacement) Commit(m Meta) error {
	if r.done {
		return errors.New("replacement already ended")
	}
	if err := r.flush(); err != nil {
		r.Abort()
		return err
	}
	r.done = true
	err := r.s.db.Update(func(tx *bolt.Tx) error {
		st := tx.Bucket(bucketStaging)
		if st == nil || st.Bucket(bucketEntities) == nil {
			return errors.New("staging bucket vanished")
		}
		if err := tx.DeleteBucket(bucketEntities); err != nil {
			return err
		}
		if err := tx.MoveBucket(bucketEntities, st, nil); err != nil {
			return err
		}
		if err := tx.DeleteBucket(bucketStaging); err != nil {
			return err
		}
		if err := clearAttempts(tx); err != nil {
			return err
		}
		return writeMeta(tx, m)
	})
	if err != nil {
		return fmt.Errorf("replace: %w", err)
	}
	return nil
}

// Abort drops what was written; the stored configuration stays.
func (r *Replacement) Abort() error {
	if r.done {
		return nil
	}
	r.done = true
	r.keys, r.values = nil, nil
	return r.s.db.Update(dropStaging)
}

// Spool is a scratch file beside the store that keeps values a resync
// collects out of memory until it knows which of them make up the
// configuration: Put appends one, Get reads it back (a copy, out of a
// read-only map of the file: no system call per value). The file is
// removed at once (it lives until Close, or the process, ends).
type Spool struct {
	f      *os.File
	w      *bufio.Writer
	size   int64  // bytes put
	mapped []byte // the file as mapped (its first len(mapped) bytes)
	err    error  // first write error; every later call returns it
}

// NewSpool opens a spool in the store's directory.
func (s *Bolt) NewSpool() (*Spool, error) {
	f, err := os.CreateTemp(s.dir, "resync-*.spool")
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	os.Remove(f.Name())
	return &Spool{f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

// Put appends value and returns its position.
func (p *Spool) Put(value []byte) (int64, error) {
	if p.err != nil {
		return 0, p.err
	}
	pos := p.size
	if _, err := p.w.Write(value); err != nil {
		p.err = fmt.Errorf("spool: %w", err)
		return 0, p.err
	}
	p.size += int64(len(value))
	return pos, nil
}

// Get reads back the n bytes put at pos, into a new slice.
func (p *Spool) Get(pos int64, n int) ([]byte, error) {
	if p.err != nil {
		return nil, p.err
	}
	if pos < 0 || n < 0 || pos+int64(n) > p.size {
		return nil, fmt.Errorf("spool: %d bytes at %d, beyond its %d bytes", n, pos, p.size)
	}
	if pos+int64(n) > int64(len(p.mapped)) {
		if err := p.remap(); err != nil {
			p.err = err
			return nil, err
		}
	}
	return append([]byte(nil), p.mapped[pos:pos+int64(n)]...), nil
}

// remap flushes what was put and maps the whole file.
func (p *Spool) remap() error {
	if err := p.w.Flush(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := p.unmap(); err != nil {
		return err
	}
	if p.size == 0 {
		return nil
	}
	m, err := syscall.Mmap(int(p.f.Fd()), 0, int(p.size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("spool: map: %w", err)
	}
	p.mapped = m
	return nil
}

func (p *Spool) unmap() error {
	if p.mapped == nil {
		return nil
	}
	err := syscall.Munmap(p.mapped)
	p.mapped = nil
	if err != nil {
		return fmt.Errorf("spool: unmap: %w", err)
	}
	return nil
}

// Size is the number of bytes put.
func (p *Spool) Size() int64 { return p.size }

// Close removes the spool.
func (p *Spool) Close() error {
	return errors.Join(p.unmap(), p.f.Close())
}
