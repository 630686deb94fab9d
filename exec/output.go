package exec

import "sync"

// ChunkSize is the size of the pieces in which a run's output is kept: a
// stream's buffer grows a chunk at a time, never by reallocation, so
// keeping OutputLimit bytes allocates OutputLimit bytes and at most one
// chunk more, and never copies what it has kept.
const ChunkSize = 64 << 10

// chunkPool recycles the chunks of released outputs (Result.Release): an
// agent answering one large run after another reuses the same memory
// instead of allocating anew while the last run's chunks wait for the
// garbage collector.
var chunkPool = sync.Pool{New: func() any { return new([ChunkSize]byte) }}

// Output is what was kept of one output stream, in chunks of ChunkSize
// bytes (all full but the last). The zero value is empty. It is what
// Result.StdoutChunks and StderrChunks hold with Request.Chunked.
type Output struct {
	chunks []*[ChunkSize]byte
	n      int // bytes kept
}

// Len returns the number of bytes kept.
func (o *Output) Len() int {
	if o == nil {
		return 0
	}
	return o.n
}

// Chunks returns the kept bytes in order, in pieces of at most ChunkSize
// bytes. The pieces are the Output's own memory: they must not be
// modified, and are only valid until Result.Release.
func (o *Output) Chunks() [][]byte {
	if o == nil || o.n == 0 {
		return nil
	}
	out := make([][]byte, 0, len(o.chunks))
	left := o.n
	for _, c := range o.chunks {
		if left == 0 {
			break // a chunk taken for a read that brought nothing
		}
		k := min(left, ChunkSize)
		out = append(out, c[:k:k])
		left -= k
	}
	return out
}

// Bytes returns a copy of the kept bytes in one slice of exactly Len
// bytes; nil when nothing was kept.
func (o *Output) Bytes() []byte {
	if o.Len() == 0 {
		return nil
	}
	b := make([]byte, 0, o.n)
	for _, c := range o.Chunks() {
		b = append(b, c...)
	}
	return b
}

// free returns room for up to max more bytes at the end of the output,
// taking a new chunk when the last one is full. max must be positive.
func (o *Output) free(max int) []byte {
	used := o.n % ChunkSize
	if used == 0 && o.n/ChunkSize == len(o.chunks) {
		o.chunks = append(o.chunks, chunkPool.Get().(*[ChunkSize]byte))
	}
	last := o.chunks[len(o.chunks)-1]
	end := min(ChunkSize, used+max)
	return last[used:end:end]
}

// grow records that n bytes were written into the room free returned,
// and returns them.
func (o *Output) grow(n int) []byte {
	used := o.n % ChunkSize
	last := o.chunks[len(o.chunks)-1]
	o.n += n
	return last[used : used+n : used+n]
}

// release hands the chunks back for reuse; the Output is empty after it.
func (o *Output) release() {
	if o == nil {
		return
	}
	for i, c := range o.chunks {
		chunkPool.Put(c)
		o.chunks[i] = nil
	}
	o.chunks, o.n = nil, 0
}
