/*
 * attempts.c
 *		How often each message has failed its apply batch, for bounded retries.
 *
 * The broker redelivers a message that was not acknowledged under a new
 * delivery tag, so a message is known by its bytes: a hash and the length.
 * The count lives in the consumer's memory, not in the database, because
 * the transaction that failed is rolled back with everything it wrote; a
 * consumer restart only starts counting again.  Two different messages
 * sharing hash and length would share a count, which at worst parks one
 * of them an attempt early.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/hsearch.h"

#include "attempts.h"

/* Past this many entries the table starts again: it cannot grow without bound. */
#define MAX_TRACKED 10000

typedef struct AttemptKey
{
	uint32 hash;
	int len;
} AttemptKey;

typedef struct AttemptEntry
{
	AttemptKey key;
	int failed;
} AttemptEntry;

static HTAB *attempts = NULL;

static AttemptKey
key_of(const char *body, int len)
{
	AttemptKey key;

	memset(&key, 0, sizeof(key));
	key.hash = hash_bytes((const unsigned char *) body, len);
	key.len = len;
	return key;
}

int
attempts_failed(const char *body, int len)
{
	AttemptKey key;
	AttemptEntry *e;

	if (attempts == NULL)
		return 0;
	key = key_of(body, len);
	e = hash_search(attempts, &key, HASH_FIND, NULL);
	return e ? e->failed : 0;
}

void
attempts_note_failure(const char *body, int len)
{
	AttemptKey key = key_of(body, len);
	AttemptEntry *e;
	bool found;

	if (attempts != NULL && hash_get_num_entries(attempts) >= MAX_TRACKED)
	{
		hash_destroy(attempts);
		attempts = NULL;
	}
	if (attempts == NULL)
	{
		HASHCTL ctl;

		ctl.keysize = sizeof(AttemptKey);
		ctl.entrysize = sizeof(AttemptEntry);
		attempts = hash_create("evrep apply attempts", 64, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	e = hash_search(attempts, &key, HASH_ENTER, &found);
	e->failed = found ? e->failed + 1 : 1;
}

void
attempts_forget(const char *body, int len)
{
	AttemptKey key;

	if (attempts == NULL || hash_get_num_entries(attempts) == 0)
		return;
	key = key_of(body, len);
	(void) hash_search(attempts, &key, HASH_REMOVE, NULL);
}
