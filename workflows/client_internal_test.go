package workflows

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.temporal.io/api/serviceerror"
)

func TestStartErrorsThatNoRetryCanFixAreTold(t *testing.T) {
	cases := []struct {
		err     error
		refused bool
	}{
		{serviceerror.NewNamespaceNotFound("orders"), true},
		{serviceerror.NewInvalidArgument("search attribute OrderId is not defined"), true},
		{serviceerror.NewInvalidArgument("blob data size exceeds limit"), true},
		{serviceerror.NewPermissionDenied("no", ""), true},
		{serviceerror.NewUnavailable("frontend down"), false},
		{serviceerror.NewDeadlineExceeded("slow"), false},
		{serviceerror.NewResourceExhausted(0, "busy"), false},
		{context.DeadlineExceeded, false},
		{errors.New("connection reset"), false},
	}
	for _, c := range cases {
		if got := refused(fmt.Errorf("wrapped: %w", c.err)); got != c.refused {
			t.Errorf("refused(%v) = %v, want %v", c.err, got, c.refused)
		}
	}
}
