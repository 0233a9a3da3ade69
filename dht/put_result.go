package dht

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// PutResult answers [Put] (type [TypePutResult]): whether the record was
// stored and, if not, why.
//
//	field 1  code    uint32  tag 0x08 (a [PutCode])
//	field 2  reason  string  tag 0x12 (at most [MaxReasonLen] bytes, for logs)
type PutResult struct {
	Code   PutCode
	Reason string
}

// PutCode says what a store did with a record. Codes above the ones listed
// are possible from newer versions; treat them as a refusal.
type PutCode uint32

// Put codes; each refusal matches a sentinel error ([PutCode.Err]).
const (
	PutStored       PutCode = 0
	PutMalformed    PutCode = 1 // ErrMalformed
	PutTooLarge     PutCode = 2 // ErrRecordTooLarge
	PutBadSignature PutCode = 3 // ErrBadSignature
	PutWrongKey     PutCode = 4 // ErrWrongKey
	PutExpired      PutCode = 5 // ErrExpired
	PutExpiryTooFar PutCode = 6 // ErrExpiryTooFar
	PutOldSeq       PutCode = 7 // ErrOldSeq
	PutTopicFull    PutCode = 8 // ErrTopicFull
	PutSourceLimit  PutCode = 9 // ErrSourceLimit
	PutStoreFull    PutCode = 10
	PutNotServer    PutCode = 11 // ErrNotServer
)

// ErrNotServer means a node in client mode was asked to store a record.
var ErrNotServer = errors.New("node does not store records (client mode)")

var putErrs = map[PutCode]error{
	PutMalformed:    ErrMalformed,
	PutTooLarge:     ErrRecordTooLarge,
	PutBadSignature: ErrBadSignature,
	PutWrongKey:     ErrWrongKey,
	PutExpired:      ErrExpired,
	PutExpiryTooFar: ErrExpiryTooFar,
	PutOldSeq:       ErrOldSeq,
	PutTopicFull:    ErrTopicFull,
	PutSourceLimit:  ErrSourceLimit,
	PutStoreFull:    ErrStoreFull,
	PutNotServer:    ErrNotServer,
}

// Err returns the sentinel error of a refusal, nil for [PutStored].
func (c PutCode) Err() error {
	if c == PutStored {
		return nil
	}
	if err, ok := putErrs[c]; ok {
		return err
	}
	return fmt.Errorf("dht: put refused with unknown code %d", uint32(c))
}

// PutCodeOf returns the code that reports err.
func PutCodeOf(err error) PutCode {
	if err == nil {
		return PutStored
	}
	for c := PutMalformed; c <= PutNotServer; c++ {
		if errors.Is(err, putErrs[c]) {
			return c
		}
	}
	return PutMalformed
}

const (
	putResultCode   protowire.Number = 1
	putResultReason protowire.Number = 2
)

// Type returns [TypePutResult].
func (*PutResult) Type() Type { return TypePutResult }

// Len returns the size of the encoded message.
func (m *PutResult) Len() int {
	return sizeVarintField(putResultCode, uint64(m.Code)) + sizeBytesField(putResultReason, len(m.Reason))
}

// Append appends the encoded message to b.
func (m *PutResult) Append(b []byte) ([]byte, error) {
	if err := checkString("put_result", "reason", m.Reason, MaxReasonLen); err != nil {
		return b, err
	}
	b = appendVarintField(b, putResultCode, uint64(m.Code))
	if m.Reason != "" {
		b = appendStringField(b, putResultReason, m.Reason)
	}
	return b, nil
}

// Unmarshal resets m and decodes b into it.
func (m *PutResult) Unmarshal(b []byte) error {
	*m = PutResult{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag("put_result", b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case putResultCode:
			var c uint32
			c, n, err = consumeUint32("put_result", num, typ, b)
			m.Code = PutCode(c)
		case putResultReason:
			m.Reason, n, err = consumeString("put_result", num, typ, b, MaxReasonLen)
		default:
			n, err = skipField("put_result", num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
