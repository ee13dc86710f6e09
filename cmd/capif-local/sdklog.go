package main

import (
	"context"
	"log/slog"
	"net"
	"net/url"
	"strings"

	"github.com/capifcore/capif-security/shared/app/sdkconfig"
)

// DynamoDB Local answers errors (a table not found yet, a failed condition) without the
// x-amz-crc32 header; the SDK then checks the body against 0 and logs a WARN on every such
// answer. That line is noise only there, so the runner drops exactly it, and only when the
// DynamoDB endpoint is a loopback override (make run-aws); against AWS every line stays.
const (
	checksumWarnPrefix = "failed to close HTTP response body"
	checksumWarnCause  = "response did not match expected checksum, 0,"
)

// localDynamoDB reports whether the environment's endpoint override points DynamoDB at a
// loopback address (AWS_ENDPOINT_URL_DYNAMODB, else AWS_ENDPOINT_URL: what make run-aws sets).
func localDynamoDB(getenv func(string) string) bool {
	ep := sdkconfig.Endpoint(getenv, "DYNAMODB")
	if ep == "" {
		return false
	}
	u, err := url.Parse(ep)
	if err != nil {
		return false
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// quietLocalChecksum drops the SDK's missing-checksum WARN lines (see above).
type quietLocalChecksum struct{ slog.Handler }

func (h quietLocalChecksum) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && strings.HasPrefix(r.Message, checksumWarnPrefix) && strings.Contains(r.Message, checksumWarnCause) && fromSDK(r) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func fromSDK(r slog.Record) bool {
	sdk := false
	r.Attrs(func(a slog.Attr) bool {
		sdk = a.Key == "source" && a.Value.String() == "aws-sdk"
		return !sdk
	})
	return sdk
}

func (h quietLocalChecksum) WithAttrs(as []slog.Attr) slog.Handler {
	return quietLocalChecksum{h.Handler.WithAttrs(as)}
}

func (h quietLocalChecksum) WithGroup(name string) slog.Handler {
	return quietLocalChecksum{h.Handler.WithGroup(name)}
}
