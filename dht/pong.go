package dht

// Pong answers a [Ping] (type [TypePong]). It has no fields; a decoder
// skips unknown ones.
type Pong struct{}

// Type returns [TypePong].
func (*Pong) Type() Type { return TypePong }

// Len returns the size of the encoded message: 0.
func (*Pong) Len() int { return 0 }

// Append appends the encoded message (nothing) to b.
func (*Pong) Append(b []byte) ([]byte, error) { return b, nil }

// Unmarshal checks that b holds only well-formed unknown fields.
func (m *Pong) Unmarshal(b []byte) error {
	for len(b) > 0 {
		num, typ, n, err := consumeTag("pong", b)
		if err != nil {
			return err
		}
		b = b[n:]
		if n, err = skipField("pong", num, typ, b); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
