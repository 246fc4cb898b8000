/*
 * attempts.h
 *		How often each message has failed its apply batch, for bounded retries.
 */
#ifndef EVREP_ATTEMPTS_H
#define EVREP_ATTEMPTS_H

/* Failed attempts recorded for this body so far (0 for a new message). */
extern int attempts_failed(const char *body, int len);

/* Records one more failed attempt of this body. */
extern void attempts_note_failure(const char *body, int len);

/* Forgets this body: it was applied or parked and acknowledged. */
extern void attempts_forget(const char *body, int len);

#endif /* EVREP_ATTEMPTS_H */
