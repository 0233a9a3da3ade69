package rendezvous

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // coturn's REST scheme is defined with HMAC-SHA1
	"encoding/base64"
	"strconv"
	"time"

	"github.com/ferrynet/ferry/identity"
)

// TURNCredentials returns coturn REST-API credentials (coturn's
// use-auth-secret): the username "EXPIRY:PEERID", EXPIRY being the Unix
// time when they stop working, and the password
// base64(HMAC-SHA1(secret, username)). Any coturn relay, and Ferry's relay,
// configured with the same secret accepts them until then.
func TURNCredentials(secret string, peer identity.PeerID, now time.Time, ttl time.Duration) (username, password string, expires time.Time) {
	expires = now.Add(ttl).Truncate(time.Second)
	username = strconv.FormatInt(expires.Unix(), 10) + ":" + peer.String()
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil)), expires
}
