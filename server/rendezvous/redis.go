package rendezvous

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

func newRedisDirectory(context.Context, *Server, redis.UniversalClient) (directory, error) {
	return nil, errors.New("rendezvous: redis: not yet")
}
