/*
 * relcache.h
 *		evrep's caches of what it reads from the catalog about relations
 *		and types, and the invalidations that make them stale (relcache.c).
 */
#ifndef EVREP_RELCACHE_H
#define EVREP_RELCACHE_H

/*
 * The head of every entry: a user's entry struct begins with it, and puts
 * its own data after it.
 */
typedef struct RelCacheEntry
{
	Oid key;	/* hash key: a relation, or a type (relcache_create_types) */
	bool valid; /* false: built at the next relcache_get */
} RelCacheEntry;

/* Fills in the user's part of an entry from the catalog. */
typedef void (*RelCacheBuildFn)(RelCacheEntry *entry);

/* Releases what a user kept in a stale entry (plans, memory); the entry stays. */
typedef void (*RelCacheFreeFn)(RelCacheEntry *entry);

/* Called with the relation of each relcache invalidation (InvalidOid: all of them). */
typedef void (*RelCacheWatchFn)(Oid relid);

typedef struct RelCache RelCache;

/*
 * A cache of entries of entrysize bytes keyed by relation: an entry goes
 * stale when its relation is invalidated.  free_entry (or NULL) is called
 * on a stale entry before build makes it again.  For the life of the
 * backend: create it once.
 */
extern RelCache *relcache_create(const char *name, Size entrysize, RelCacheBuildFn build,
								 RelCacheFreeFn free_entry);

/*
 * A cache keyed by type, whose every entry goes stale at any change to
 * pg_type or to any relation (a composite type's attributes are its
 * relation's).  The entries and what they keep in relcache_memory() are
 * then dropped together.
 */
extern RelCache *relcache_create_types(const char *name, Size entrysize, RelCacheBuildFn build);

/*
 * The entry for key, built if it was missing or stale.  A build that
 * fails leaves the entry stale, to be freed and built at the next call.
 */
extern RelCacheEntry *relcache_get(RelCache *cache, Oid key);

/* Memory that lives as long as the cache's entries: a types cache resets it. */
extern MemoryContext relcache_memory(RelCache *cache);

/*
 * Calls fn at every relcache invalidation, for what is not a table of
 * entries.  Watching with the same function again changes nothing.
 */
extern void relcache_watch(RelCacheWatchFn fn);

#endif /* EVREP_RELCACHE_H */
