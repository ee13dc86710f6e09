// Package logjson is the service's slog handler: the lines of slog.JSONHandler, byte for byte,
// written without reflection for the records the service writes on every request.
//
// The access log line carries a dozen members and an Embedded Metric Format directive (an
// array, which slog can only render through encoding/json); through slog.JSONHandler it costs
// more than everything else on the token path but the signature. This package keeps slog as
// the only logging API and makes that line cheap.
//
// Contract:
//   - New(w, opts) is a slog.Handler whose every line is the line slog.NewJSONHandler(w, opts)
//     writes for the same record (tests compare the two, fuzzed).
//   - Members is a run of pre-encoded JSON object members ("k":v,…) built with its methods,
//     which encode as slog.JSONHandler does. Logged as Members.Attr(), they are members of the
//     line itself (not nested). New's handler copies them into the line; any other handler
//     resolves them (Members is a slog.LogValuer) into ordinary attributes and renders the same
//     line, only slower.
//   - The fast path covers records whose attributes are strings, integers, booleans and
//     Members, on a handler without WithAttrs, WithGroup, ReplaceAttr or AddSource; every other
//     record is handed to slog.JSONHandler. Both paths write through one lock, one Write per
//     line.
package logjson
