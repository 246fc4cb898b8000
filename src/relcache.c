/*
 * relcache.c
 *		evrep's caches of what it reads from the catalog about relations
 *		and types, and the invalidations that make them stale.
 *
 * The statements that apply to a subscribed table (apply_target.c), those
 * that read a published table's chunks (copy_send.c), how each type is
 * written as JSON (row_json.c) and where the outbox partitions are
 * (capture.c) are all read from the catalog once and kept until an
 * invalidation says the catalog changed.  This file holds their tables of
 * entries and registers one relcache callback and one pg_type syscache
 * callback for all of them: a backend has room for only ten relcache
 * callbacks, shared with every other loaded library.
 */
#include "postgres.h"

#include "utils/catcache.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "relcache.h"

struct RelCache
{
	const char *name;
	Size entrysize;
	RelCacheBuildFn build;
	RelCacheFreeFn free_entry;
	bool types;			 /* keyed by type: any change drops every entry */
	bool stale;			 /* (types) drop them at the next relcache_get */
	MemoryContext cxt;	 /* the table and relcache_memory() */
	HTAB *entries;		 /* NULL until the first relcache_get after a drop */
	RelCacheEntry *last; /* the entry relcache_get returned last, or NULL */
	RelCache *next;
};

static RelCache *caches = NULL;

/* capture.c's outbox: one is all there is */
#define MAX_WATCHERS 4
static RelCacheWatchFn watchers[MAX_WATCHERS];
static int nwatchers = 0;

static bool callbacks_registered = false;

/* Marks the entry of relid stale, or every entry for InvalidOid. */
static void
mark_stale(RelCache *cache, Oid relid)
{
	HASH_SEQ_STATUS status;
	RelCacheEntry *entry;

	if (OidIsValid(relid))
	{
		entry = hash_search(cache->entries, &relid, HASH_FIND, NULL);
		if (entry != NULL)
			entry->valid = false;
		return;
	}
	hash_seq_init(&status, cache->entries);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->valid = false;
}

/*
 * Only marks: the callback may run inside a user's build of an entry (any
 * lock taken processes invalidations), which must not see its entry go.
 */
static void
invalidate_relation(Datum arg, Oid relid)
{
	for (RelCache *cache = caches; cache != NULL; cache = cache->next)
	{
		if (cache->types)
			cache->stale = true;
		else if (cache->entries != NULL)
			mark_stale(cache, relid);
	}
	for (int i = 0; i < nwatchers; i++)
		watchers[i](relid);
}

static void
invalidate_types(Datum arg, int cacheid, uint32 hashvalue)
{
	for (RelCache *cache = caches; cache != NULL; cache = cache->next)
	{
		if (cache->types)
			cache->stale = true;
	}
}

static void
register_callbacks(void)
{
	if (callbacks_registered)
		return;
	CacheRegisterRelcacheCallback(invalidate_relation, (Datum) 0);
	CacheRegisterSyscacheCallback(TYPEOID, invalidate_types, (Datum) 0);
	callbacks_registered = true;
}

static RelCache *
create_cache(const char *name, Size entrysize, RelCacheBuildFn build, RelCacheFreeFn free_entry,
			 bool types)
{
	RelCache *cache;

	Assert(entrysize >= sizeof(RelCacheEntry));
	if (CacheMemoryContext == NULL)
		CreateCacheMemoryContext();
	register_callbacks();
	cache = MemoryContextAllocZero(CacheMemoryContext, sizeof(RelCache));
	cache->name = name;
	cache->entrysize = entrysize;
	cache->build = build;
	cache->free_entry = free_entry;
	cache->types = types;
	cache->cxt = AllocSetContextCreate(CacheMemoryContext, "evrep cache", ALLOCSET_SMALL_SIZES);
	/* name is the caller's constant: it outlives the context */
	MemoryContextSetIdentifier(cache->cxt, name);
	cache->next = caches;
	caches = cache;
	return cache;
}

RelCache *
relcache_create(const char *name, Size entrysize, RelCacheBuildFn build, RelCacheFreeFn free_entry)
{
	return create_cache(name, entrysize, build, free_entry, false);
}

RelCache *
relcache_create_types(const char *name, Size entrysize, RelCacheBuildFn build)
{
	return create_cache(name, entrysize, build, NULL, true);
}

RelCacheEntry *
relcache_get(RelCache *cache, Oid key)
{
	RelCacheEntry *entry;
	bool found;

	if (cache->stale && cache->entries != NULL)
	{
		/* the table is in cxt too */
		MemoryContextReset(cache->cxt);
		cache->entries = NULL;
		cache->last = NULL;
	}
	cache->stale = false;

	/*
	 * A statement's rows ask for one relation again and again.  Entries are
	 * never removed from the table (only marked stale), so the last one
	 * stays where it is until the table goes.
	 */
	if (cache->last != NULL && cache->last->key == key && cache->last->valid)
		return cache->last;
	if (cache->entries == NULL)
	{
		HASHCTL ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = cache->entrysize;
		ctl.hcxt = cache->cxt;
		cache->entries = hash_create(cache->name, 32, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(cache->entries, &key, HASH_ENTER, &found);
	if (!found)
	{
		memset(entry, 0, cache->entrysize);
		entry->key = key;
	}
	if (!entry->valid)
	{
		if (found && cache->free_entry != NULL)
			cache->free_entry(entry);
		cache->build(entry);
		entry->valid = true;
	}
	cache->last = entry;
	return entry;
}

MemoryContext
relcache_memory(RelCache *cache)
{
	return cache->cxt;
}

void
relcache_watch(RelCacheWatchFn fn)
{
	for (int i = 0; i < nwatchers; i++)
	{
		if (watchers[i] == fn)
			return;
	}
	if (nwatchers == MAX_WATCHERS)
		elog(ERROR, "too many evrep relcache watchers");
	register_callbacks();
	watchers[nwatchers++] = fn;
}
