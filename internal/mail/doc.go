// Package mail owns the provider's outgoing mail: the SMTP settings
// (IDP_SMTP_URL, IDP_MAIL_FROM), the messages themselves (plain text and
// HTML from templates, one link each, no tracking), the single-use link
// tokens those messages carry, and the delivery of one message over SMTP.
//
// Queueing is not here: a message is written to the outbox in the
// transaction of the change that causes it, and the outbox's workers call
// Sender.Send (see Job).
package mail
