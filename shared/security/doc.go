/*
Package security is the domain of the CAPIF_Security_API (3GPP TS 29.222 §5.6): the six
operations of its four service operations, security method selection, scope parsing, token
claims and revocation, on ports that know nothing of HTTP, Lambda or AWS.

# Ports

A Service is built by New on five ports:

  - Store keeps the security contexts and the outbox and answers every operation's read. Reads
    are strongly consistent; writes are conditional on the version read (optimistic locking).
    Optional capabilities: ContextLocker (a store in one process serializes the writers of a
    context) and, through Query.ForAEF, leaving out a context that has no entry for an AEF
    without decoding it.
  - Registry writes what the CCF knows of onboarded invokers, AEFs and published APIs: one
    transactional Update whose function either commits whole or not at all. The rules of a
    registry change (import, removals) are this package's; adapters only give item access.
  - Signer signs TokenClaims (ES256, typ at+jwt) and publishes the JWKS.
  - Notifier posts a JSON body to an invoker's notificationDestination; it guards against SSRF
    and bounds its time. Optional: DestinationChecker refuses a destination at create/update.
  - Clock is the time source.

KeySet is a sixth port, for the Signer adapters that keep their keys as records rather than in
configuration: one versioned set of SigningKey records, read strongly consistent and written
only conditionally on the version read. The rules of a rotation are SigningKeys methods
(Publish, Import, TakeOver, Retire, Prune, Signer, Published), pure functions of the set, the
time and the KeyWindows: a key is published ActivationDelay before it signs and stays published
Overlap after its successor took over, so no verifier meets a token whose key its JWKS lacks; a
signer uses a set at most MaxStale old. Only the first key of a set, keys that signed before it
(Import) and the runner's algorithm switch (TakeOver) sign as soon as they are published.

The edge (package httpapi, and through it the Lambda functions and the local runner) builds
the Caller from a verified client certificate and decodes requests; this package sees only a
Caller and typed, decoded requests, and returns *Error values whose Kind the edge maps to a
status.

# Check order

Every operation answers in this order, whatever else is wrong with the request:

 1. No usable client certificate: 401 (the edge answers it before reading the body).
 2. Unknown caller (not in the registry): 401; an OAuth invalid_client on the token endpoint.
 3. Wrong role: 403 ROLE_NOT_ALLOWED (invokers manage contexts and ask for tokens, AEFs read and
    revoke).
 4. Another invoker's resource: 403 NOT_OWNER, decided from the caller's own record before
    anything of the target is read.
 5. The request itself: 400 (decoding errors are the edge's, validation this package's), 406,
    415, 413.
 6. The state: 403 SECURITY_CONTEXT_EXISTS on PUT, 404 SECURITY_CONTEXT_NOT_FOUND (for an AEF
    also when the context has no entry for it, so AEFs cannot enumerate contexts), then the
    operation's own rules.

Authorize applies steps 2–4 alone. The edge calls it only when it could not decode a request, so
that a decoding error is told only to a caller who may use the operation; on the happy path each
operation applies the same rule to the result of its own single read.

# One request, from decode to store

The edge decodes the request and calls one method. The method makes exactly one Store.Load,
whose Query names everything the rules need (the caller's record, the context, the AEF
catalogues and interface index entries that securityInfo refers to), applies the check order,
builds the new state, and makes at most one conditional write (Create, or Replace with the
notifications it owes). A write that loses a race is retried from the read, a bounded number of
times (Config.MaxAttempts), and then answered 503 with nothing changed.

# Outbox

A revocation (DELETE, POST …/delete, an admin removal of an API or of an invoker) writes the
context change and the SecurityNotifications it owes in one atomic write, so it never commits
without them. The records are written already claimed (ClaimedUntil) for the attempt made right
after the commit and before the method returns (a Lambda is frozen once it answers); a 2xx
deletes the record (Delivered), a failure records the attempt and the next one (Attempted:
exponential backoff with full jitter, dead-lettered at once for ErrUndeliverable or when the
retry window ends). DeliverDue is the worker: it claims each due record with a conditional
write before attempting it, so two workers never make the same attempt at once, and a claim
that lapses (a process that died mid-delivery) makes the record due again. Every attempt of a
notification carries its record's id (Delivery.ID), so receivers can discard repeats. Nothing
is cleared without a 2xx; operators list, redrive and drop records (Outbox, Redrive,
DropNotification).
*/
package security
