// Package alerts owns the "was this you?" mails: the device cookie that
// tells a sign-in from a device an account has not used (a random value
// the browser keeps for a year, stored hashed per account; nothing is
// read from the device itself), the alerts for such a sign-in and for
// changes of the account's password, second factors and an
// administrator's revoke-all, and the "This wasn't me" link they carry,
// whose page ends the session (or every session, for a change) through
// the one revocation path and leads to the password reset.
//
// An alert is queued in the unit of work of what it reports, as one
// outbox row of kind OutboxKind naming the event; a worker then makes the
// link and queues the mail (package mail) in one transaction, as the
// password reset does. Without mail configured none of this is wired.
package alerts
