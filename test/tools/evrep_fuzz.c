/*
 * evrep_fuzz -- generated and mutated evrep.v1 messages for test/t/40_fuzz.t
 * (built on first use by fuzz_tool there).
 *
 *   evrep_fuzz broker URL SEED N OUTDIR
 *       generates N messages from SEED and publishes them to the exchange
 *       "evrep" (persistent, mandatory, AMQP user_id = the URL's user unless
 *       a message is meant to carry none) with publisher confirms; fails if
 *       one is nacked or returned as unroutable
 *   evrep_fuzz sql SEED N OUTDIR
 *       generates N messages for evrep_apply() into OUTDIR/sql.tsv, one line
 *       each: number, sender (\N: vouched for), body in hex
 *   evrep_fuzz tail URL SEED OUTDIR
 *       publishes an authentic message for a table whose name is too long
 *       for an index entry, then a valid message behind it
 *
 * Every message but a few tiny ones starts with {"fz":"<marker>", (a field
 * evrep ignores), so a message parked whole is known by its first bytes.
 * Mutations never touch the marker. What must become of each message is
 * decided here, by a model of the subscriber (per-stream progress, the rows
 * of table fz_t), and written to OUTDIR/<path>.<manifest>.tsv:
 *   raw       marker, kind, SQLSTATE (LIKE pattern), attempts (0: any):
 *             the message must be parked whole
 *   evpark    kind, origin, schema (hex), table (hex), seq, SQLSTATE:
 *             the event must be parked alone
 *   rows      id, name (hex), credit: what fz_t holds of this path's ids
 *   streams   origin, schema (hex), table (hex), applied, skipped, parked,
 *             last_seq: evrep.progress of each stream the model knows
 *   flips     marker: a bit flipped anywhere; not predicted, but it carries
 *             exactly one event, of a table fz_r0..fz_r3, so the test can
 *             count what became of these messages
 *   unmarked  kind, body (hex): parked whole, without a marker
 *   kinds     kind, messages
 * Bodies for the sql path are valid UTF-8 without NUL: a text argument can
 * carry nothing else.
 *
 * Exit status 0 on success, 1 on failure (message on stderr).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define HIGH_SEQ ((int64_t) 1000000000000000) /* seqs of messages that must not parse */
#define BIG_BODY (20 * 1024 * 1024)
#define CONFIRM_WINDOW 1000
#define MAX_EVENTS 6
#define NELEM(a) ((int) (sizeof(a) / sizeof((a)[0])))

#define TOOL_NAME "evrep_fuzz"
#include "amqp_common.h"

static void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
		die("out of memory");
	return p;
}

static char *
xstrdup(const char *s)
{
	return strcpy(xrealloc(NULL, strlen(s) + 1), s);
}

/* ---- buffers ---- */

typedef struct Buf
{
	char *data;
	size_t len;
	size_t cap;
} Buf;

static void
buf_reserve(Buf *b, size_t more)
{
	if (b->len + more + 1 <= b->cap)
		return;
	while (b->len + more + 1 > b->cap)
		b->cap = b->cap ? b->cap * 2 : 256;
	b->data = xrealloc(b->data, b->cap);
}

static void
buf_put(Buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void
buf_puts(Buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

static void
buf_putc(Buf *b, char c)
{
	buf_put(b, &c, 1);
}

static void
buf_fill(Buf *b, char c, size_t n)
{
	buf_reserve(b, n);
	memset(b->data + b->len, c, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
buf_printf(Buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	buf_reserve(b, (size_t) n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t) n;
}

static void
buf_reset(Buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

/* ---- random numbers (splitmix64: a seed gives the same messages every time) ---- */

static uint64_t rng_state;

static uint64_t
rnd(void)
{
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static int
rnd_int(int n)
{
	return (int) (rnd() % (uint64_t) n);
}

static bool
chance(int percent)
{
	return rnd_int(100) < percent;
}

#define PICK(a) ((a)[rnd_int(NELEM(a))])

/* ---- UTF-8 (what PostgreSQL accepts as text: no NUL, no surrogates, no overlong forms) ---- */

static bool
utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n)
	{
		unsigned c = s[i], cp;
		int k;

		if (c == 0)
			return false;
		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			k = 1, cp = c & 0x1F;
		else if (c >= 0xE0 && c <= 0xEF)
			k = 2, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4)
			k = 3, cp = c & 0x07;
		else
			return false;
		for (int j = 1; j <= k; j++)
		{
			if (i + j >= n || (s[i + j] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + j] & 0x3F);
		}
		if ((k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
			(k == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
			return false;
		i += (size_t) k + 1;
	}
	return true;
}

/* ---- manifests ---- */

typedef enum Manifest
{
	M_RAW,
	M_EVPARK,
	M_ROWS,
	M_STREAMS,
	M_FLIPS,
	M_UNMARKED,
	M_KINDS,
	M_COUNT
} Manifest;

static const char *const manifest_names[M_COUNT] = {"raw",	 "evpark",	 "rows", "streams",
													"flips", "unmarked", "kinds"};
static FILE *manifests[M_COUNT];

static void
open_manifests(const char *dir, const char *path)
{
	for (int i = 0; i < M_COUNT; i++)
	{
		char name[4096];

		snprintf(name, sizeof(name), "%s/%s.%s.tsv", dir, path, manifest_names[i]);
		if ((manifests[i] = fopen(name, "w")) == NULL)
			die("cannot write %s: %s", name, strerror(errno));
	}
}

static void
close_manifests(void)
{
	for (int i = 0; i < M_COUNT; i++)
		if (fclose(manifests[i]) != 0)
			die("cannot write a manifest: %s", strerror(errno));
}

static void
put_hex(FILE *f, const char *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++)
	{
		fputc(digits[(unsigned char) p[i] >> 4], f);
		fputc(digits[(unsigned char) p[i] & 15], f);
	}
}

static void
put_hex_str(FILE *f, const char *s)
{
	put_hex(f, s, strlen(s));
}

/* ---- kinds of messages ---- */

typedef enum Kind
{
	K_VALID,
	K_OOO,
	K_DUP,
	K_MIXED,
	K_ROWERR,
	K_UNSUB,
	K_DUPKEY_OK,
	K_DUPKEY_RAW,
	K_TYPES_OK,
	K_TYPES_RAW,
	K_FORMAT,
	K_OP,
	K_SEQ_RANGE,
	K_SEQ_BIG,
	K_NUM_VALUE,
	K_FORGED,
	K_NOUSER,
	K_SENDER,
	K_TRUNC,
	K_FLIP_STRUCT,
	K_FLIP_HIGH,
	K_FLIP,
	K_NUL,
	K_BADUTF8,
	K_UNICODE_ESC,
	K_MIDNEST,
	K_NEST_OK,
	K_DEEP,
	K_BIG,
	K_EMPTY,
	K_ODD_SEQ,
	K_LONGNAME,
	K_SENTINEL,
	K_NKINDS
} Kind;

typedef struct KindInfo
{
	const char *name;
	int weight_broker; /* relative weight of random picks; 0: never picked */
	int weight_sql;
} KindInfo;

static const KindInfo kinds[K_NKINDS] = {
	[K_VALID] = {"valid", 200, 200},
	[K_OOO] = {"out_of_order", 15, 15},
	[K_DUP] = {"duplicate", 20, 20},
	[K_MIXED] = {"valid_and_bad_events", 40, 40},
	[K_ROWERR] = {"bad_row_value", 40, 40},
	[K_UNSUB] = {"not_subscribed", 40, 40},
	[K_DUPKEY_OK] = {"duplicate_keys_valid", 20, 20},
	[K_DUPKEY_RAW] = {"duplicate_keys_invalid", 20, 20},
	[K_TYPES_OK] = {"odd_types_accepted", 30, 30},
	[K_TYPES_RAW] = {"wrong_json_types", 90, 90},
	[K_FORMAT] = {"unknown_format", 20, 20},
	[K_OP] = {"unknown_op", 20, 20},
	[K_SEQ_RANGE] = {"seq_out_of_range", 30, 30},
	[K_SEQ_BIG] = {"seq_huge_valid", 5, 5},
	[K_NUM_VALUE] = {"huge_row_number", 20, 20},
	[K_FORGED] = {"forged_origin", 40, 30},
	[K_NOUSER] = {"no_user_id", 20, 0},
	[K_SENDER] = {"wrong_sender", 0, 30},
	[K_TRUNC] = {"truncated", 80, 80},
	[K_FLIP_STRUCT] = {"bitflip_structural", 60, 60},
	[K_FLIP_HIGH] = {"bitflip_high_bit", 30, 0},
	[K_FLIP] = {"bitflip_anywhere", 100, 100},
	[K_NUL] = {"nul_byte", 30, 0},
	[K_BADUTF8] = {"invalid_utf8", 40, 0},
	[K_UNICODE_ESC] = {"bad_unicode_escape", 20, 20},
	[K_MIDNEST] = {"nested_event", 2, 2},
	[K_NEST_OK] = {"nested_ignored_field", 2, 2},
	[K_DEEP] = {"deep_nesting", 0, 0},
	[K_BIG] = {"big_body", 0, 0},
	[K_EMPTY] = {"tiny_body", 0, 0},
	[K_ODD_SEQ] = {"fractional_seq", 0, 0},
	[K_LONGNAME] = {"long_table_name", 0, 0},
	[K_SENTINEL] = {"valid_after_long_name", 0, 0},
};

static long kind_count[K_NKINDS];

/* ---- the path: where messages go, and the names it uses ---- */

typedef struct PathConf
{
	bool sql;
	const char *name;		/* "broker", "sql" or "tail" */
	char prefix;			/* of markers */
	const char *origin;		/* the authentic origin */
	const char *origin_big; /* a second authentic origin (huge seqs) */
	int id_base;			/* fz_t ids of this path */
} PathConf;

static PathConf P;
static long marker_no;
static char marker[32];

static void
next_marker(void)
{
	snprintf(marker, sizeof(marker), "%c%07ld", P.prefix, ++marker_no);
}

static size_t
marker_end(void) /* just past the marker's closing quote */
{
	return strlen("{\"fz\":\"\"") + strlen(marker);
}

/* ---- the subscriber's model ---- */

typedef struct SeqSet
{
	uint8_t *bits; /* seqs below nbits */
	int64_t nbits;
	int64_t *big; /* the others */
	int nbig;
} SeqSet;

static bool
seqset_add(SeqSet *s, int64_t seq) /* false if it was there */
{
	if (seq < (1LL << 26))
	{
		if (seq >= s->nbits)
		{
			int64_t n = s->nbits ? s->nbits : 4096;

			while (n <= seq)
				n *= 2;
			s->bits = xrealloc(s->bits, (size_t) n / 8);
			memset(s->bits + s->nbits / 8, 0, (size_t) (n - s->nbits) / 8);
			s->nbits = n;
		}
		if (s->bits[seq / 8] & (1 << (seq % 8)))
			return false;
		s->bits[seq / 8] |= (uint8_t) (1 << (seq % 8));
		return true;
	}
	for (int i = 0; i < s->nbig; i++)
		if (s->big[i] == seq)
			return false;
	s->big = xrealloc(s->big, sizeof(int64_t) * (size_t) (s->nbig + 1));
	s->big[s->nbig++] = seq;
	return true;
}

typedef struct Stream
{
	const char *origin;
	const char *schema;
	const char *table;
	const char *routing_key; /* a key bound to B's queue that carries it */
	bool subscribed;
	bool fz_t; /* its rows are modelled */
	SeqSet claimed;
	int64_t next_seq;
	int64_t applied, skipped, parked, last_seq;
	bool used;
} Stream;

enum
{
	S_T,   /* fz_t, the main stream */
	S_BIG, /* fz_t, another origin, seqs near the top of bigint */
	S_U,   /* not subscribed: S_U .. S_NEW */
	S_AUTH,
	S_PROG,
	S_INJ,
	S_UNI,
	S_CASE,
	S_NEW,
	S_R0, /* fz_r0 .. fz_r3: the bit flips */
	S_ODD,
	S_A, /* node A's real stream: forged messages only */
	S_COUNT
};

static Stream streams[S_COUNT];

static void
init_streams(void)
{
	static const struct
	{
		const char *schema, *table;
		bool subscribed;
	} def[S_COUNT] = {
		[S_T] = {"public", "fz_t", true},
		[S_BIG] = {"public", "fz_t", true},
		[S_U] = {"public", "fz_unsub", false},
		[S_AUTH] = {"pg_catalog", "pg_authid", false},
		[S_PROG] = {"evrep", "progress", false},
		[S_INJ] = {"public", "fz_t\"; DROP TABLE fz_t; --", false},
		[S_UNI] = {"public", "fz_t\xc3\xbc", false},
		[S_CASE] = {"PUBLIC", "fz_t", false},
		[S_NEW] = {"public", "fz_new", false},
		[S_R0] = {"public", "fz_r0", true},
		[S_ODD] = {"public", "fz_unsub", false},
		[S_A] = {"public", "customer", true},
	};

	for (int i = 0; i < S_COUNT; i++)
	{
		Stream *s = &streams[i];

		memset(s, 0, sizeof(*s));
		s->origin = P.origin;
		s->schema = def[i].schema;
		s->table = def[i].table;
		s->subscribed = def[i].subscribed;
		s->routing_key = "public.fz_t";
		s->next_seq = 1;
	}
	streams[S_T].fz_t = streams[S_BIG].fz_t = true;
	streams[S_BIG].origin = P.origin_big;
	streams[S_ODD].origin = "fzodd";
	streams[S_A].origin = "fz_a";
	streams[S_A].routing_key = "public.customer";
}

/* The flips' streams: one per fz_rN table. */
static Stream flip_streams[4];

static void
init_flip_streams(void)
{
	static const char *const tables[4] = {"fz_r0", "fz_r1", "fz_r2", "fz_r3"};
	static const char *const keys[4] = {"public.fz_r0", "public.fz_r1", "public.fz_r2",
										"public.fz_r3"};

	for (int i = 0; i < 4; i++)
	{
		flip_streams[i] = streams[S_R0];
		flip_streams[i].table = tables[i];
		flip_streams[i].routing_key = keys[i];
	}
}

/* fz_t rows of this path: id = id_base + index */
typedef struct Row
{
	bool present;
	char *name; /* UTF-8 */
	bool credit_null;
	long credit;
} Row;

static Row *rows;
static int nrows;

static int
new_row_index(void)
{
	rows = xrealloc(rows, sizeof(Row) * (size_t) (nrows + 1));
	memset(&rows[nrows], 0, sizeof(Row));
	return nrows++;
}

static int
pick_live(void) /* a present row, or -1 */
{
	for (int t = 0; nrows > 0 && t < 32; t++)
	{
		int i = rnd_int(nrows);

		if (rows[i].present)
			return i;
	}
	return -1;
}

/* ---- events and messages, before they are written ---- */

/*
 * The *_js members are raw JSON written instead of the value; "-" leaves
 * the member out.
 */
typedef struct Event
{
	int64_t seq;
	const char *seq_js;
	const char *op;
	const char *op_js;
	char opc; /* i, u or d: what the model applies */
	int id;
	char *name;			 /* decoded UTF-8; NULL: no name member */
	const char *name_js; /* instead of name */
	bool credit_absent;
	bool credit_null;
	long credit;
	const char *credit_js;
	const char *row_js;	  /* the whole row */
	const char *extra;	  /* members added to the row */
	const char *ev_extra; /* members added to the event */
	bool commit_ts;
	const char *ts_js;
	const char *sqlstate; /* the apply error this event must be parked with */
} Event;

typedef struct Msg
{
	Stream *stream;
	int nevents;
	Event ev[MAX_EVENTS];
	const char *format_js, *origin_js, *schema_js, *table_js, *key_js, *events_js;
	const char *extra_top; /* members added last */
	bool pretty;		   /* whitespace between tokens */
	bool plain;			   /* no whitespace, escapes or reordering */
	bool no_user;		   /* broker: no user_id */
	const char *sender;	   /* sql: evrep_apply's sender (NULL: vouched for) */
	char marker[32];
} Msg;

/* pieces of names: single bytes, and longer ones */
static const char name_bytes[] = "abcxyzAQ07 -_'\"\\/\t\n\x7f{}[]%";
static const char *const name_pieces[] = {
	"\xc3\xa9",		"\xc3\xbc",			"\xc3\x9f", "\xe6\x97\xa5\xe6\x9c\xac",
	"\xe2\x82\xac", "\xf0\x9f\x98\x80", "O'Brien",	"\\u0041"};

static char *
random_name(bool plain)
{
	Buf b = {0};
	int n = 1 + rnd_int(plain ? 12 : 10);

	for (int i = 0; i < n; i++)
	{
		if (plain)
			buf_putc(&b, "abcdefghijklmnopqrstuvwxyz0123456789"[rnd_int(36)]);
		else if (chance(80))
			buf_putc(&b, name_bytes[rnd_int((int) sizeof(name_bytes) - 1)]);
		else
			buf_puts(&b, PICK(name_pieces));
	}
	return b.data;
}

/* A JSON string: escapes what must be escaped and, unless plain, some of what may be. */
static void
put_json_string(Buf *b, const char *s, bool plain)
{
	const unsigned char *p = (const unsigned char *) s;

	buf_putc(b, '"');
	while (*p)
	{
		unsigned c = *p;

		if (c == '"' || c == '\\')
		{
			buf_putc(b, '\\');
			buf_putc(b, (char) c);
			p++;
		}
		else if (c < 0x20)
		{
			if (c == '\n' && chance(70))
				buf_puts(b, "\\n");
			else if (c == '\t' && chance(70))
				buf_puts(b, "\\t");
			else
				buf_printf(b, "\\u%04x", c);
			p++;
		}
		else if (c < 0x80)
		{
			if (!plain && c == '/' && chance(50))
				buf_puts(b, "\\/");
			else if (!plain && chance(3))
				buf_printf(b, "\\u%04X", c);
			else
				buf_putc(b, (char) c);
			p++;
		}
		else
		{
			int k = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
			unsigned cp = c & (k == 1 ? 0x1F : k == 2 ? 0x0F : 0x07);

			for (int j = 1; j <= k; j++)
				cp = (cp << 6) | (p[j] & 0x3F);
			if (!plain && chance(25))
			{
				if (cp >= 0x10000)
				{
					unsigned v = cp - 0x10000;

					buf_printf(b, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
				}
				else
					buf_printf(b, "\\u%04x", cp);
			}
			else
				buf_put(b, p, (size_t) k + 1);
			p += k + 1;
		}
	}
	buf_putc(b, '"');
}

static const char *
ws(const Msg *m)
{
	static const char *const spaces[] = {" ", "\n", "\t", "  ", "\r\n", " \n\t "};

	return m->pretty ? PICK(spaces) : "";
}

/* ,"key":value -- raw JSON, or the string str; raw "-" writes nothing */
static void
put_member(Buf *b, const Msg *m, bool *first, const char *key, const char *raw, const char *str)
{
	const char *w1, *w2, *w3;

	if (raw && strcmp(raw, "-") == 0)
		return;
	w1 = ws(m);
	w2 = ws(m);
	w3 = ws(m);
	buf_printf(b, "%s%s\"%s\"%s:%s", *first ? "" : ",", w1, key, w2, w3);
	*first = false;
	if (raw)
		buf_puts(b, raw);
	else
		put_json_string(b, str, m->plain);
}

static void
shuffle(int *a, int n)
{
	for (int i = n - 1; i > 0; i--)
	{
		int j = rnd_int(i + 1), t = a[i];

		a[i] = a[j];
		a[j] = t;
	}
}

static void
write_row(Buf *b, const Msg *m, const Event *e)
{
	int order[3] = {0, 1, 2};
	bool first = true;
	char num[64];

	buf_putc(b, '{');
	if (!m->plain)
		shuffle(order, 3);
	for (int i = 0; i < 3; i++)
	{
		if (order[i] == 0)
		{
			snprintf(num, sizeof(num), "%d", e->id);
			put_member(b, m, &first, "id", num, NULL);
		}
		else if (order[i] == 1 && (e->name_js || e->name))
			put_member(b, m, &first, "name", e->name_js, e->name);
		else if (order[i] == 2 && !e->credit_absent)
		{
			const char *v = e->credit_js;

			snprintf(num, sizeof(num), "%ld", e->credit);
			if (v == NULL)
				v = e->credit_null ? "null" : num;
			put_member(b, m, &first, "credit", v, NULL);
		}
	}
	if (e->extra)
		buf_printf(b, ",%s", e->extra);
	buf_puts(b, ws(m));
	buf_putc(b, '}');
}

static void
write_event(Buf *b, const Msg *m, const Event *e)
{
	int order[4] = {0, 1, 2, 3};
	bool first = true;
	char num[64];

	buf_putc(b, '{');
	if (!m->plain)
		shuffle(order, 4);
	for (int i = 0; i < 4; i++)
	{
		switch (order[i])
		{
			case 0:
				snprintf(num, sizeof(num), "%" PRId64, e->seq);
				put_member(b, m, &first, "seq", e->seq_js ? e->seq_js : num, NULL);
				break;
			case 1:
				put_member(b, m, &first, "op", e->op_js, e->op);
				break;
			case 2:
				if (e->ts_js || e->commit_ts)
					put_member(b, m, &first, "commit_ts", e->ts_js,
							   "2026-11-29T12:34:56.789012+00:00");
				break;
			default:
				if (e->row_js)
					put_member(b, m, &first, "row", e->row_js, NULL);
				else
				{
					buf_printf(b, "%s%s\"row\":%s", first ? "" : ",", ws(m), ws(m));
					first = false;
					write_row(b, m, e);
				}
				break;
		}
	}
	if (e->ev_extra)
		buf_printf(b, "%s%s", first ? "" : ",", e->ev_extra);
	buf_puts(b, ws(m));
	buf_putc(b, '}');
}

/* The whole message, marker first; events last when fixed_order. */
static void
write_msg_order(Buf *b, const Msg *m, bool fixed_order)
{
	int order[6] = {0, 1, 2, 3, 4, 5};
	bool first = false;

	buf_reset(b);
	buf_printf(b, "{\"fz\":\"%s\"", m->marker);
	if (!m->plain && !fixed_order)
		shuffle(order, 6);
	for (int i = 0; i < 6; i++)
	{
		switch (order[i])
		{
			case 0:
				put_member(b, m, &first, "format", m->format_js, "evrep.v1");
				break;
			case 1:
				put_member(b, m, &first, "origin", m->origin_js, m->stream->origin);
				break;
			case 2:
				put_member(b, m, &first, "schema", m->schema_js, m->stream->schema);
				break;
			case 3:
				put_member(b, m, &first, "table", m->table_js, m->stream->table);
				break;
			case 4:
				put_member(b, m, &first, "key", m->key_js ? m->key_js : "[\"id\"]", NULL);
				break;
			default:
				if (m->events_js)
				{
					put_member(b, m, &first, "events", m->events_js, NULL);
					break;
				}
				buf_printf(b, ",%s\"events\":%s[", ws(m), ws(m));
				for (int j = 0; j < m->nevents; j++)
				{
					if (j > 0)
						buf_printf(b, ",%s", ws(m));
					write_event(b, m, &m->ev[j]);
				}
				buf_putc(b, ']');
				break;
		}
	}
	if (m->extra_top)
		buf_printf(b, ",%s", m->extra_top);
	buf_puts(b, ws(m));
	buf_putc(b, '}');
}

static void
write_msg(Buf *b, const Msg *m)
{
	write_msg_order(b, m, false);
}

/* ---- building events ---- */

static void
row_values(Event *e, bool plain)
{
	e->name = random_name(plain);
	e->credit_null = chance(10);
	e->credit = (long) rnd_int(2000001) - 1000000;
}

static void
new_insert(Event *e, bool plain)
{
	memset(e, 0, sizeof(*e));
	e->op = "insert";
	e->opc = 'i';
	e->id = P.id_base + new_row_index();
	e->commit_ts = chance(50);
	row_values(e, plain);
}

/* An event the model applies to fz_t: insert, update (maybe without credit) or delete. */
static void
valid_event(Event *e)
{
	int idx = pick_live();

	if (idx < 0 || chance(55))
		new_insert(e, false);
	else if (chance(75))
	{
		memset(e, 0, sizeof(*e));
		e->op = "update";
		e->opc = 'u';
		e->id = P.id_base + idx;
		e->commit_ts = chance(50);
		row_values(e, false);
		e->credit_absent = chance(20); /* keeps the row's credit */
	}
	else
	{
		memset(e, 0, sizeof(*e));
		e->op = "delete";
		e->opc = 'd';
		e->id = P.id_base + idx;
		e->commit_ts = chance(50);
		e->name = xstrdup(rows[idx].name ? rows[idx].name : "");
		e->credit_null = rows[idx].credit_null;
		e->credit = rows[idx].credit;
	}
	if (chance(5))
		e->extra = "\"not_a_column\":{\"a\":[1,2,{\"b\":null}]},\"\xc3\xa9t\xc3\xa9\":\"x\"";
	if (chance(3))
		e->ev_extra = "\"txid\":12345,\"note\":\"ignored\"";
}

/* An event in a range of ids nothing applies: for messages that must not apply. */
static void
stray_event(Event *e, int64_t seq)
{
	memset(e, 0, sizeof(*e));
	e->op = PICK(((const char *[]){"insert", "update", "delete"}));
	e->id = 3000000 + rnd_int(1000000);
	e->commit_ts = chance(50);
	row_values(e, false);
	e->seq = seq;
}

/* An event whose row makes the apply fail, whatever the table holds. */
static void
bad_row_event(Event *e)
{
	static const struct
	{
		const char *field, *json, *sqlstate;
	} bad[] = {
		{"credit", "\"lots\"", "22P02"},
		{"credit", "[1]", "22P02"},
		{"credit", "true", "22P02"},
		{"credit", "1.5", "22P02"},
		{"credit", "{\"a\":1}", "22P02"},
		{"credit", "3000000000", "22003"},
		{"credit", "-2147483649", "22003"},
		{"name", "null", "23502"},
		{"id", "null", "23502"},
		{"id", "\"abc\"", "22P02"},
		{"id", "-", "23502"}, /* no id at all */
		{"id", "7.5", "22P02"},
	};
	int k = rnd_int(NELEM(bad));
	Buf row = {0};

	memset(e, 0, sizeof(*e));
	e->op = chance(50) ? "insert" : "update";
	e->sqlstate = bad[k].sqlstate;
	e->commit_ts = chance(30);
	buf_putc(&row, '{');
	if (strcmp(bad[k].field, "id") != 0)
		buf_printf(&row, "\"id\":%d,", 900000000 + rnd_int(1000));
	else if (strcmp(bad[k].json, "-") != 0)
		buf_printf(&row, "\"id\":%s,", bad[k].json);
	buf_printf(&row, "\"name\":%s,", strcmp(bad[k].field, "name") == 0 ? bad[k].json : "\"bad\"");
	buf_printf(&row, "\"credit\":%s}", strcmp(bad[k].field, "credit") == 0 ? bad[k].json : "1");
	e->row_js = row.data;
}

/* ---- the model ---- */

static void
model_event(Stream *s, const Event *e, Kind kind)
{
	const char *park = NULL;
	Row *r;

	s->used = true;
	if (!seqset_add(&s->claimed, e->seq))
	{
		s->skipped++;
		return;
	}
	if (e->seq > s->last_seq)
		s->last_seq = e->seq;
	if (!s->subscribed)
		park = "42P01";
	else if (e->sqlstate)
		park = e->sqlstate;
	if (park)
	{
		s->parked++;
		fprintf(manifests[M_EVPARK], "%s\t%s\t", kinds[kind].name, s->origin);
		put_hex_str(manifests[M_EVPARK], s->schema);
		fputc('\t', manifests[M_EVPARK]);
		put_hex_str(manifests[M_EVPARK], s->table);
		fprintf(manifests[M_EVPARK], "\t%" PRId64 "\t%s\n", e->seq, park);
		return;
	}
	s->applied++;
	if (!s->fz_t)
		return;
	r = &rows[e->id - P.id_base];
	if (e->opc == 'd')
	{
		r->present = false;
		return;
	}
	if (!r->present)
	{
		/* a new row: what the event does not carry is NULL */
		free(r->name);
		r->name = NULL;
		r->credit_null = true;
	}
	r->present = true;
	if (e->name)
	{
		free(r->name);
		r->name = xstrdup(e->name);
	}
	if (!e->credit_absent)
	{
		r->credit_null = e->credit_null;
		r->credit = e->credit;
	}
}

static void
model_deliver(const Msg *m, Kind kind)
{
	for (int i = 0; i < m->nevents; i++)
		model_event(m->stream, &m->ev[i], kind);
}

/* ---- output: the broker ---- */

static amqp_connection_state_t conn;
static const char *conn_user;
static uint8_t *confirmed; /* by delivery tag */
static size_t confirmed_cap;
static uint64_t published, nconfirmed, confirmed_low, nacked, returned;
static uint64_t bytes_published;

static void
broker_open(const char *url)
{
	conn = tool_connect(url, &conn_user);
	amqp_confirm_select(conn, 1);
	check_reply(amqp_get_rpc_reply(conn), "confirm.select");
}

static void
mark_confirmed(uint64_t tag, bool multiple, bool ack)
{
	if (tag == 0 || tag > published)
		die("a confirm for delivery tag %" PRIu64 ", %" PRIu64 " published", tag, published);
	for (uint64_t t = multiple ? confirmed_low + 1 : tag; t <= tag; t++)
	{
		if (confirmed[t])
			continue;
		confirmed[t] = 1;
		nconfirmed++;
		if (!ack)
			nacked++;
	}
	while (confirmed_low < published && confirmed[confirmed_low + 1])
		confirmed_low++;
}

/*
 * Reads what the broker sent: confirms (basic.ack / basic.nack, one or
 * `multiple`), returned messages, a closed channel. Blocks while more than
 * `limit` messages are unconfirmed.
 */
static void
pump(uint64_t limit)
{
	for (;;)
	{
		bool block = published - nconfirmed > limit;
		struct timeval tv = {block ? 120 : 0, 0};
		amqp_frame_t f;
		int st = amqp_simple_wait_frame_noblock(conn, &f, &tv);

		if (st == AMQP_STATUS_TIMEOUT && !block)
			return;
		if (st == AMQP_STATUS_TIMEOUT)
			die("no confirm within 120 s (%" PRIu64 " of %" PRIu64 " confirmed)", nconfirmed,
				published);
		if (st != AMQP_STATUS_OK)
			die("reading from the broker: %s", amqp_error_string2(st));
		if (f.frame_type != AMQP_FRAME_METHOD)
			continue;
		switch (f.payload.method.id)
		{
			case AMQP_BASIC_ACK_METHOD:
			{
				amqp_basic_ack_t *a = f.payload.method.decoded;

				mark_confirmed(a->delivery_tag, a->multiple, true);
				break;
			}
			case AMQP_BASIC_NACK_METHOD:
			{
				amqp_basic_nack_t *a = f.payload.method.decoded;

				mark_confirmed(a->delivery_tag, a->multiple, false);
				break;
			}
			case AMQP_BASIC_RETURN_METHOD:
			{
				amqp_message_t msg;

				returned++;
				check_reply(amqp_read_message(conn, f.channel, &msg, 0),
							"reading a returned message");
				amqp_destroy_message(&msg);
				break;
			}
			case AMQP_CHANNEL_CLOSE_METHOD:
			case AMQP_CONNECTION_CLOSE_METHOD:
				die_if_closed(NULL, f.payload.method);
				break;
			default:
				break;
		}
	}
}

static void
broker_publish(const char *routing_key, const char *body, size_t len, bool with_user)
{
	amqp_basic_properties_t props;
	amqp_bytes_t b;

	memset(&props, 0, sizeof(props));
	props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG |
				   AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_APP_ID_FLAG;
	props.delivery_mode = 2;
	props.content_type = amqp_cstring_bytes("application/json");
	props.type = amqp_cstring_bytes("evrep.v1");
	props.app_id = amqp_cstring_bytes("evrep_fuzz");
	if (with_user)
	{
		props._flags |= AMQP_BASIC_USER_ID_FLAG;
		props.user_id = amqp_cstring_bytes(conn_user);
	}
	if (published + 2 > confirmed_cap)
	{
		size_t old = confirmed_cap;

		confirmed_cap = confirmed_cap ? confirmed_cap * 2 : 4096;
		confirmed = xrealloc(confirmed, confirmed_cap);
		memset(confirmed + old, 0, confirmed_cap - old);
	}
	b.bytes = (void *) body;
	b.len = len;
	if (amqp_basic_publish(conn, 1, amqp_cstring_bytes("evrep"), amqp_cstring_bytes(routing_key), 1,
						   0, &props, b) != AMQP_STATUS_OK)
		die("basic.publish failed");
	published++;
	bytes_published += len;
	pump(CONFIRM_WINDOW);
}

static void
broker_finish(void)
{
	pump(0);
	tool_disconnect(conn);
}

/* ---- output: the sql file ---- */

static FILE *sql_out;
static long sql_n;

static void
sql_write(const char *sender, const char *body, size_t len)
{
	if (!utf8_valid((const unsigned char *) body, len))
		die("internal: a message for the sql path is not valid UTF-8 (marker %s)", marker);
	fprintf(sql_out, "%ld\t%s\t", ++sql_n, sender ? sender : "\\N"); /* senders: plain words */
	put_hex(sql_out, body, len);
	fputc('\n', sql_out);
}

/* ---- emitting ---- */

static Buf body;

static void
send_body(const Msg *m, const char *p, size_t len)
{
	if (P.sql)
		sql_write(m->sender, p, len);
	else
		broker_publish(m->stream->routing_key, p, len, !m->no_user);
}

/* It must be parked whole, with a SQLSTATE LIKE sqlstate, after `attempts` tries (0: any). */
static void
emit_raw(const Msg *m, Kind kind, const char *p, size_t len, const char *sqlstate, int attempts)
{
	fprintf(manifests[M_RAW], "%s\t%s\t%s\t%d\n", m->marker, kinds[kind].name, sqlstate, attempts);
	send_body(m, p, len);
}

/* It parses and its sender may speak for its origin: the model says what becomes of it. */
static void
emit_parsed(const Msg *m, Kind kind)
{
	model_deliver(m, kind);
	send_body(m, body.data, body.len);
}

static void
init_msg(Msg *m, Stream *s)
{
	memset(m, 0, sizeof(*m));
	m->stream = s;
	m->pretty = chance(15);
	next_marker();
	memcpy(m->marker, marker, sizeof(marker));
}

/* Like a valid message, for mutations: seqs from HIGH_SEQ, ids nothing applies. */
static void
template_msg(Msg *m, bool plain)
{
	static int64_t high;

	init_msg(m, &streams[S_T]);
	m->plain = plain;
	if (plain)
		m->pretty = false;
	m->nevents = 1 + rnd_int(3);
	for (int i = 0; i < m->nevents; i++)
	{
		stray_event(&m->ev[i], HIGH_SEQ + ++high);
		if (plain)
		{
			m->ev[i].op = "insert";
			m->ev[i].name = random_name(true);
		}
	}
	write_msg(&body, m);
}

/* ---- the generators ---- */

#define DUP_KEEP 64
static struct
{
	Msg m;
	Buf body;
} recent[DUP_KEEP];
static int nrecent;

static void
remember(const Msg *m, const Buf *b)
{
	int k = nrecent++ % DUP_KEEP;

	recent[k].m = *m;
	buf_reset(&recent[k].body);
	buf_put(&recent[k].body, b->data, b->len);
}

/*
 * Valid events; the model takes each event as it is made, since a later
 * one may update or delete the row an earlier one inserted.
 */
static void
gen_valid(Kind kind)
{
	Msg m;

	init_msg(&m, &streams[S_T]);
	m.nevents = 1 + rnd_int(5);
	for (int i = 0; i < m.nevents; i++)
	{
		valid_event(&m.ev[i]);
		m.ev[i].seq = streams[S_T].next_seq++;
		if (i == m.nevents - 1 && i > 0 && chance(5))
		{
			/* a seq twice in one message: the second is a duplicate */
			m.ev[i].seq = m.ev[0].seq;
			streams[S_T].next_seq--;
		}
		model_event(&streams[S_T], &m.ev[i], kind);
	}
	if (P.sql && chance(10))
		m.sender = P.origin; /* the user named like the origin */
	write_msg(&body, &m);
	send_body(&m, body.data, body.len);
	remember(&m, &body);
}

/* Two valid messages, the later one sent first: a gap, then filled. */
static void
gen_ooo(void)
{
	Msg a, b;
	Buf first = {0};

	init_msg(&a, &streams[S_T]);
	a.nevents = 1 + rnd_int(3);
	for (int i = 0; i < a.nevents; i++)
	{
		valid_event(&a.ev[i]);
		a.ev[i].seq = streams[S_T].next_seq++;
	}
	write_msg(&first, &a);
	/* b inserts new ids only, so a's events mean the same before or after it */
	init_msg(&b, &streams[S_T]);
	b.nevents = 1 + rnd_int(3);
	for (int i = 0; i < b.nevents; i++)
	{
		new_insert(&b.ev[i], false);
		b.ev[i].seq = streams[S_T].next_seq++;
	}
	write_msg(&body, &b);
	emit_parsed(&b, K_OOO);
	model_deliver(&a, K_OOO);
	send_body(&a, first.data, first.len);
	free(first.data);
}

/* A valid message sent again, byte for byte: every event is skipped. */
static void
gen_dup(void)
{
	int k;

	if (nrecent == 0)
	{
		gen_valid(K_DUP);
		return;
	}
	k = rnd_int(nrecent < DUP_KEEP ? nrecent : DUP_KEEP);
	model_deliver(&recent[k].m, K_DUP);
	send_body(&recent[k].m, recent[k].body.data, recent[k].body.len);
}

/* Good and bad events in one message: the bad ones are parked, the good ones applied. */
static void
gen_mixed(void)
{
	Msg m;

	init_msg(&m, &streams[S_T]);
	m.nevents = 2 + rnd_int(4);
	for (int i = 0; i < m.nevents; i++)
	{
		if (i == 0 || chance(50))
			bad_row_event(&m.ev[i]);
		else
			valid_event(&m.ev[i]);
		m.ev[i].seq = streams[S_T].next_seq++;
		model_event(&streams[S_T], &m.ev[i], K_MIXED);
	}
	write_msg(&body, &m);
	send_body(&m, body.data, body.len);
}

static void
gen_rowerr(void)
{
	Msg m;

	init_msg(&m, &streams[S_T]);
	m.nevents = 1;
	bad_row_event(&m.ev[0]);
	m.ev[0].seq = streams[S_T].next_seq++;
	write_msg(&body, &m);
	emit_parsed(&m, K_ROWERR);
}

static void
gen_unsub(void)
{
	Msg m;
	Stream *s = &streams[S_U + rnd_int(S_NEW - S_U + 1)];

	init_msg(&m, s);
	m.nevents = 1 + rnd_int(3);
	for (int i = 0; i < m.nevents; i++)
		stray_event(&m.ev[i], s->next_seq++);
	write_msg(&body, &m);
	emit_parsed(&m, K_UNSUB);
}

/* Duplicate keys: jsonb keeps the last value of a key, and so does evrep. */
static void
gen_dupkey_ok(void)
{
	static char seqjs[64];
	Msg m;
	Event *e;
	Buf origin = {0};
	bool fixed = false;

	init_msg(&m, &streams[S_T]);
	m.nevents = 1;
	e = &m.ev[0];
	valid_event(e);
	e->seq = streams[S_T].next_seq++;
	switch (rnd_int(5))
	{
		case 0:
			m.format_js = "\"evrep.v9\",\"format\":\"evrep.v1\"";
			break;
		case 1: /* another node's name first, then the sender's own */
			buf_printf(&origin, "\"fz_a\",\"origin\":\"%s\"", P.origin);
			m.origin_js = origin.data;
			if (P.sql)
				m.sender = P.origin;
			break;
		case 2: /* an unsubscribed table first */
			m.table_js = "\"fz_unsub\",\"table\":\"fz_t\"";
			break;
		case 3: /* seq twice in the event */
			snprintf(seqjs, sizeof(seqjs), "%" PRId64 ",\"seq\":%" PRId64, HIGH_SEQ + 5, e->seq);
			e->seq_js = seqjs;
			break;
		default: /* events twice: an empty array first (written before the real one) */
			m.key_js = "[\"id\"],\"events\":[]";
			fixed = true;
			break;
	}
	write_msg_order(&body, &m, fixed);
	emit_parsed(&m, K_DUPKEY_OK);
	free(origin.data);
}

static void
gen_dupkey_raw(void)
{
	static const struct
	{
		const char *last, *sqlstate;
	} bad[] = {
		{"\"format\":\"evrep.v9\"", "22023"},
		{"\"events\":[]", "22023"},
		{"\"table\":5", "22023"},
		{"\"origin\":\"fz_a\"", "28000"},
	};
	Msg m;
	int k = rnd_int(NELEM(bad));

	init_msg(&m, &streams[S_T]);
	m.nevents = 1;
	stray_event(&m.ev[0], HIGH_SEQ / 2 + rnd_int(1000000));
	m.extra_top = bad[k].last;
	if (P.sql)
		m.sender = P.origin;
	write_msg(&body, &m);
	emit_raw(&m, K_DUPKEY_RAW, body.data, body.len, bad[k].sqlstate, 1);
}

/* Odd types the apply takes, as documented or harmlessly. */
static void
gen_types_ok(void)
{
	static char num[32], cred[32];
	Msg m;
	Event *e;

	init_msg(&m, &streams[S_T]);
	m.nevents = 1;
	e = &m.ev[0];
	new_insert(e, false);
	e->seq = streams[S_T].next_seq++;
	switch (rnd_int(6))
	{
		case 0: /* "key" is not read: the table's primary key is */
			m.key_js = PICK(((const char *[]){"\"garbage\"", "5", "null", "{}", "[[1]]", "-"}));
			break;
		case 1: /* a number for a text column: its text */
			snprintf(num, sizeof(num), "%d", rnd_int(100000));
			e->name_js = num;
			e->name = xstrdup(num);
			break;
		case 2: /* a string for an integer column: its value */
			e->credit = rnd_int(100000);
			e->credit_null = false;
			snprintf(cred, sizeof(cred), "\"%ld\"", e->credit);
			e->credit_js = cred;
			break;
		case 3: /* commit_ts null: as if absent */
			e->commit_ts = false;
			e->ts_js = "null";
			break;
		case 4: /* header strings with \u escapes */
			m.format_js = "\"evrep.\\u0076\\u0031\"";
			m.table_js = "\"fz\\u005ft\"";
			break;
		default: /* a boolean for a text column: its text */
			e->name_js = "true";
			e->name = xstrdup("true");
			break;
	}
	write_msg(&body, &m);
	emit_parsed(&m, K_TYPES_OK);
}

/* Each field with a wrong JSON type, empty or missing ("-"). */
static void
gen_types_raw(void)
{
	static const char *const header_vals[] = {"1",	  "true", "false",	 "[]",	 "{}",
											  "\"\"", "null", "[\"x\"]", "-1.5", "-"};
	static const char *const events_vals[] = {"1",		 "true",   "{}",  "\"\"",
											  "null",	 "[]",	   "[1]", "[[]]",
											  "[\"x\"]", "[null]", "-",	  "{\"seq\":1}"};
	static const char *const seq_vals[] = {"\"1\"", "true", "false", "[]", "{}",
										   "null",	"[1]",	"\"\"",	 "-"};
	static const char *const op_vals[] = {"1", "true", "[]", "{}", "null", "\"\"", "-"};
	static const char *const row_vals[] = {"1",	   "true",	 "\"x\"", "[]",
										   "null", "\"{}\"", "[{}]",  "-"};
	static const char *const ts_vals[] = {
		"1", "true", "[]", "{}", "\"not a time\"", "\"\"", "\"2026-13-45T99:00:00\""};
	static const char *const tops[] = {"[]",   "\"evrep.v1\"", "1",	  "null",
									   "true", "[{\"fz\":1}]", "\"\""};
	Msg m;
	Event *e;
	const char *sqlstate = "22023";

	init_msg(&m, &streams[S_T]);
	m.nevents = 1;
	e = &m.ev[0];
	stray_event(e, HIGH_SEQ / 4 + rnd_int(1000000));
	if (P.sql)
		m.sender = chance(50) ? P.origin : NULL;
	switch (rnd_int(11))
	{
		case 0:
			m.format_js = PICK(header_vals);
			break;
		case 1:
			m.origin_js = PICK(header_vals);
			break;
		case 2:
			m.schema_js = PICK(header_vals);
			break;
		case 3:
			m.table_js = PICK(header_vals);
			break;
		case 4:
			m.events_js = PICK(events_vals);
			break;
		case 5:
			e->seq_js = PICK(seq_vals);
			break;
		case 6:
			e->op_js = PICK(op_vals);
			break;
		case 7:
			e->row_js = PICK(row_vals);
			break;
		case 8:
			e->ts_js = PICK(ts_vals);
			sqlstate = "22%"; /* wrong type 22023, not a time 22007 / 22008 */
			break;
		case 9: /* not an object: no room for a marker */
		{
			const char *t = PICK(tops);

			fprintf(manifests[M_UNMARKED], "%s\t", kinds[K_TYPES_RAW].name);
			put_hex_str(manifests[M_UNMARKED], t);
			fputc('\n', manifests[M_UNMARKED]);
			send_body(&m, t, strlen(t));
			return;
		}
		default: /* an event that is not an object */
			m.events_js = PICK(((const char *[]){"[1]", "[\"x\"]", "[[]]", "[true]", "[null]"}));
			break;
	}
	write_msg(&body, &m);
	emit_raw(&m, K_TYPES_RAW, body.data, body.len, sqlstate, 1);
}

static void
gen_format(void)
{
	static const char *const formats[] = {"\"evrep.v2\"",	 "\"evrep.v1 \"", "\"EVREP.V1\"",
										  "\"evrep.v10\"",	 "\"evrep\"",	  "\"evrep.v0\"",
										  "\"evrep.v1\\n\"", "\" evrep.v1\"", "\"evrep.v\\u0032\""};
	Msg m;

	template_msg(&m, false);
	m.format_js = PICK(formats);
	write_msg(&body, &m);
	emit_raw(&m, K_FORMAT, body.data, body.len, "22023", 1);
}

/* "truncate" is an op since evrep 1.1: its case variants are still unknown */
static void
gen_op(void)
{
	static const char *const ops[] = {"upsert", "INSERT",  "Insert", "TRUNCATE",
									  "",		"insert ", "del",	 "merge"};
	Msg m;

	template_msg(&m, false);
	m.ev[rnd_int(m.nevents)].op = PICK(ops);
	write_msg(&body, &m);
	emit_raw(&m, K_OP, body.data, body.len, "22023", 1);
}

static Buf long_digits;

static void
gen_seq_range(void)
{
	static const struct
	{
		const char *seq, *sqlstate;
	} bad[] = {
		{"1e400", "22003"},
		{"9223372036854775808", "22003"},
		{"18446744073709551617", "22003"},
		{"-9223372036854775808", "22023"},
		{"-1", "22023"},
		{"0", "22023"},
		{"-0", "22023"},
		{"1e19", "22003"},
		{"-1e400", "22003"},
		{NULL, "22003"}, /* 1 and 200000 zeros */
	};
	static int nlong;
	Msg m;
	int k = rnd_int(NELEM(bad));

	if (bad[k].seq == NULL && ++nlong > 3)
		k = 0; /* 200 kB each: a few will do */
	template_msg(&m, false);
	if (bad[k].seq == NULL)
	{
		if (long_digits.len == 0)
		{
			buf_putc(&long_digits, '1');
			buf_fill(&long_digits, '0', 200000);
		}
		m.ev[0].seq_js = long_digits.data;
	}
	else
		m.ev[0].seq_js = bad[k].seq;
	write_msg(&body, &m);
	emit_raw(&m, K_SEQ_RANGE, body.data, body.len, bad[k].sqlstate, 1);
}

/* Valid events with seqs near the top of bigint, on a stream of their own. */
static void
gen_seq_big(void)
{
	static const int64_t seqs[] = {INT64_MAX, INT64_MAX,	1, INT64_MAX - 1,
								   1LL << 62, 1LL << 62,	2, 4611686018427387905LL,
								   3,		  INT64_MAX - 2};
	static int next;
	Msg m;

	init_msg(&m, &streams[S_BIG]);
	m.nevents = 1;
	valid_event(&m.ev[0]);
	m.ev[0].seq = seqs[next++ % NELEM(seqs)];
	if (P.sql && chance(50))
		m.sender = P.origin_big;
	write_msg(&body, &m);
	emit_parsed(&m, K_SEQ_BIG);
}

/* Numbers too big for the columns: the event is parked. */
static void
gen_num_value(void)
{
	static const char *const bad[] = {
		"{\"id\":1,\"name\":\"n\",\"credit\":1e400}",
		"{\"id\":1e400,\"name\":\"n\",\"credit\":1}",
		"{\"id\":9223372036854775808,\"name\":\"n\"}",
		"{\"id\":1,\"name\":\"n\",\"credit\":-99999999999999999999}",
	};
	Msg m;

	init_msg(&m, &streams[S_T]);
	m.nevents = 1;
	memset(&m.ev[0], 0, sizeof(Event));
	m.ev[0].op = "insert";
	m.ev[0].row_js = PICK(bad);
	m.ev[0].sqlstate = "22003";
	m.ev[0].seq = streams[S_T].next_seq++;
	write_msg(&body, &m);
	emit_parsed(&m, K_NUM_VALUE);
}

/*
 * Another origin's name in the body, sent by this tool's own broker user
 * (sql: sender "fuzzer"); some claim node A's real stream, with seqs it
 * has used or not yet.
 */
static void
gen_forged(void)
{
	static const char *const origins[] = {"\"fz_a\"",	"\"fz_b\"",	   "\"guest\"",
										  "\"FUZZER\"", "\"fuzzer \"", "\"fzbig2\"",
										  "\"fzsql2\"", "\"fuzze\"",   "\"f\\u0075zzer2\""};
	Msg m;
	bool a = chance(40);

	init_msg(&m, a ? &streams[S_A] : &streams[S_T]);
	m.nevents = 1 + rnd_int(2);
	for (int i = 0; i < m.nevents; i++)
	{
		stray_event(&m.ev[i], chance(50) ? 1 + rnd_int(5) : 1000000 + rnd_int(1000000));
		if (a)
		{
			Buf r = {0};

			buf_printf(&r, "{\"id\":%d,\"name\":\"forged\",\"credit\":666}",
					   5000000 + rnd_int(1000000));
			m.ev[i].row_js = r.data;
		}
	}
	m.origin_js = a ? "\"fz_a\"" : PICK(origins);
	if (P.sql)
		m.sender = "fuzzer";
	write_msg(&body, &m);
	emit_raw(&m, K_FORGED, body.data, body.len, "28000", 1);
}

/* broker: no user_id at all */
static void
gen_nouser(void)
{
	Msg m;

	init_msg(&m, chance(50) ? &streams[S_T] : &streams[S_BIG]);
	m.nevents = 1;
	stray_event(&m.ev[0], 1 + rnd_int(1000));
	m.no_user = true;
	write_msg(&body, &m);
	emit_raw(&m, K_NOUSER, body.data, body.len, "28000", 1);
}

/* sql: a sender that may not speak for the origin */
static void
gen_sender(void)
{
	static const char *const senders[] = {"fuzzer", "fz_a", "", "FZSQL", "fzsql_", "guest"};
	Msg m;

	init_msg(&m, chance(50) ? &streams[S_T] : &streams[S_BIG]);
	m.nevents = 1;
	stray_event(&m.ev[0], 1 + rnd_int(1000));
	m.sender = PICK(senders);
	write_msg(&body, &m);
	emit_raw(&m, K_SENDER, body.data, body.len, "28000", 1);
}

static void
gen_trunc(void)
{
	Msg m;
	size_t lo, cut;

	template_msg(&m, false);
	lo = marker_end();
	cut = lo + (size_t) rnd_int((int) (body.len - lo));
	while (P.sql && cut > lo && ((unsigned char) body.data[cut] & 0xC0) == 0x80)
		cut--; /* not inside a character */
	emit_raw(&m, K_TRUNC, body.data, cut, "22%", 1);
}

/* Positions at or after `from` of the bytes outside strings, and of the quotes. */
static size_t *
structural_positions(const Buf *b, size_t from, int *n)
{
	size_t *pos = xrealloc(NULL, sizeof(size_t) * b->len);
	bool in_string = false;

	*n = 0;
	for (size_t i = 0; i < b->len; i++)
	{
		char c = b->data[i];

		if (in_string && c == '\\')
			i++;
		else if (c == '"' || (!in_string && strchr("{}[]:,", c)))
		{
			if (c == '"')
				in_string = !in_string;
			if (i >= from)
				pos[(*n)++] = i;
		}
	}
	return pos;
}

/*
 * A bit flipped in a byte of the JSON structure: none of the neighbours of
 * { } [ ] : , keeps the text valid there, and a quote less leaves an odd
 * number of them (the template has no escaped quotes).
 */
static void
gen_flip_struct(void)
{
	Msg m;
	int n;
	size_t *pos;

	template_msg(&m, true);
	pos = structural_positions(&body, marker_end(), &n);
	body.data[pos[rnd_int(n)]] ^= (char) (1 << rnd_int(P.sql ? 7 : 8));
	free(pos);
	emit_raw(&m, K_FLIP_STRUCT, body.data, body.len, "22%", 1);
}

/* The high bit set in an ASCII byte: never valid UTF-8. */
static void
gen_flip_high(void)
{
	Msg m;
	size_t p;

	template_msg(&m, true);
	p = marker_end() + (size_t) rnd_int((int) (body.len - marker_end()));
	body.data[p] = (char) (body.data[p] | 0x80);
	emit_raw(&m, K_FLIP_HIGH, body.data, body.len, "22021", 1);
}

/*
 * One bit flipped anywhere after the marker of a valid one-event message
 * for a table fz_rN. What it becomes is not predicted: the test counts.
 */
static void
gen_flip(void)
{
	Msg m;
	Stream *s = &flip_streams[rnd_int(4)];
	Event *e;
	size_t lo, p;
	char saved;

	init_msg(&m, s);
	m.nevents = 1;
	e = &m.ev[0];
	memset(e, 0, sizeof(*e));
	e->op = chance(80) ? "insert" : chance(50) ? "update" : "delete";
	/*
	 * Ids of the two paths apart, even flipped (a digit flips to a digit or
	 * to what is not a number), so that B's consumer and the evrep_apply
	 * session never wait for each other's rows.
	 */
	e->id = P.sql ? 200001 + rnd_int(99999) : 1 + rnd_int(100000);
	e->commit_ts = chance(50);
	row_values(e, chance(50));
	e->seq = s->next_seq++;
	write_msg(&body, &m);
	lo = marker_end() + 1;
	for (;;)
	{
		p = lo + (size_t) rnd_int((int) (body.len - lo));
		saved = body.data[p];
		body.data[p] = (char) (body.data[p] ^ (1 << rnd_int(8)));
		if (!P.sql || utf8_valid((const unsigned char *) body.data, body.len))
			break;
		body.data[p] = saved;
	}
	fprintf(manifests[M_FLIPS], "%s\n", m.marker);
	send_body(&m, body.data, body.len);
}

static void
gen_nul(void)
{
	Msg m;
	size_t p;

	template_msg(&m, false);
	p = marker_end() + (size_t) rnd_int((int) (body.len - marker_end()));
	if (chance(50))
		body.data[p] = '\0';
	else
	{
		buf_putc(&body, 'x');
		memmove(body.data + p + 1, body.data + p, body.len - p - 1);
		body.data[p] = '\0';
	}
	emit_raw(&m, K_NUL, body.data, body.len, "22023", 1);
}

static void
gen_badutf8(void)
{
	static const char *const seqs[] = {"\xff",
									   "\xfe\xff",
									   "\xc3\x28",
									   "\xc0\xaf",
									   "\xe0\x80\xaf",
									   "\xed\xa0\x80",
									   "\xf4\x90\x80\x80",
									   "\xf8\x88\x80\x80\x80",
									   "\x80",
									   "\xe2\x82",
									   "\xc3"};
	Msg m;
	const char *s = PICK(seqs);
	size_t p;
	Buf out = {0};

	template_msg(&m, true); /* ASCII only: nothing after the bytes completes a character */
	p = marker_end() + (size_t) rnd_int((int) (body.len - marker_end()));
	buf_put(&out, body.data, p);
	buf_puts(&out, s);
	buf_put(&out, body.data + p, body.len - p);
	emit_raw(&m, K_BADUTF8, out.data, out.len, "22021", 1);
	free(out.data);
}

static void
gen_unicode_esc(void)
{
	static const struct
	{
		const char *name, *sqlstate;
	} bad[] = {
		{"\"a\\u0000b\"", "22P05"},		 {"\"\\ud800\"", "22P02"}, {"\"\\udc00x\"", "22P02"},
		{"\"\\ud83d\\u0041\"", "22P02"}, {"\"\\uzzzz\"", "22P02"}, {"\"\\u12\"", "22P02"},
		{"\"\\x41\"", "22P02"},			 {"\"\\\"", "22P02"},
	};
	Msg m;
	int k = rnd_int(NELEM(bad));

	template_msg(&m, false);
	m.ev[0].name_js = bad[k].name;
	write_msg(&body, &m);
	emit_raw(&m, K_UNICODE_ESC, body.data, body.len, bad[k].sqlstate, 1);
}

static void
nested(Buf *b, int depth, bool objects)
{
	for (int i = 0; i < depth; i++)
		buf_puts(b, objects ? "{\"a\":" : "[");
	buf_putc(b, '1');
	buf_fill(b, objects ? '}' : ']', (size_t) depth);
}

/* Nesting the parser manages, where an event must be: parked whole. */
static void
gen_midnest(void)
{
	Msg m;
	Buf ev = {0};

	template_msg(&m, false);
	buf_putc(&ev, '[');
	nested(&ev, 500 + rnd_int(4500), chance(50));
	buf_putc(&ev, ']');
	m.events_js = ev.data;
	write_msg(&body, &m);
	emit_raw(&m, K_MIDNEST, body.data, body.len, "22023", 1);
	free(ev.data);
}

/* Nesting the parser manages, in a row member the table does not have: applied. */
static void
gen_nest_ok(void)
{
	Msg m;
	Buf x = {0};

	init_msg(&m, &streams[S_T]);
	m.nevents = 1;
	new_insert(&m.ev[0], false);
	m.ev[0].seq = streams[S_T].next_seq++;
	buf_puts(&x, "\"deep\":");
	nested(&x, 500 + rnd_int(4500), chance(50));
	m.ev[0].extra = x.data;
	write_msg(&body, &m);
	emit_parsed(&m, K_NEST_OK);
	free(x.data);
}

/* 100k-300k levels: the parser runs out of stack (54001), every time. */
static void
gen_deep(int attempts)
{
	Msg m;
	Buf x = {0};
	int depth = 100000 + rnd_int(200001);

	template_msg(&m, false);
	switch (rnd_int(3))
	{
		case 0:
			nested(&x, depth, false);
			m.events_js = x.data;
			break;
		case 1: /* never closed */
			buf_fill(&x, '[', (size_t) depth);
			m.events_js = x.data;
			break;
		default:
			buf_puts(&x, "\"deep\":");
			nested(&x, depth, true);
			m.ev[0].extra = x.data;
			break;
	}
	write_msg(&body, &m);
	emit_raw(&m, K_DEEP, body.data, body.len, "54001", attempts);
	free(x.data);
}

/* ~20 MB bodies */
static void
gen_big(int variant)
{
	Msg m;
	Buf pad = {0};

	if (variant == 0)
	{
		/* valid: a 20 MB member the table does not have */
		init_msg(&m, &streams[S_T]);
		m.nevents = 1;
		new_insert(&m.ev[0], true);
		m.ev[0].seq = streams[S_T].next_seq++;
		buf_puts(&pad, "\"pad\":\"");
		buf_reserve(&pad, BIG_BODY);
		for (size_t i = 0; i < BIG_BODY; i++)
			pad.data[pad.len++] = "abcdefghijklmnopqrstuvwxyz0123456789"[rnd() % 36];
		buf_putc(&pad, '"');
		m.ev[0].extra = pad.data;
		write_msg(&body, &m);
		emit_parsed(&m, K_BIG);
	}
	else if (variant == 1)
	{
		/* random bytes after the marker (sql: random letters) */
		template_msg(&m, true);
		body.len = marker_end() + 2;
		buf_reserve(&body, BIG_BODY);
		for (size_t i = 0; i < BIG_BODY; i++)
			body.data[body.len++] =
				(char) (P.sql ? 'a' + (int) (rnd() % 26) : (int) (rnd() & 0xFF));
		emit_raw(&m, K_BIG, body.data, body.len, "22%", 1);
	}
	else
	{
		/* a valid 20 MB message, then a NUL (broker), or cut short */
		template_msg(&m, true);
		buf_puts(&pad, "\"pad\":\"");
		buf_fill(&pad, 'p', BIG_BODY);
		buf_putc(&pad, '"');
		m.ev[0].extra = pad.data;
		write_msg(&body, &m);
		if (variant == 2 && !P.sql)
		{
			buf_putc(&body, '\0');
			emit_raw(&m, K_BIG, body.data, body.len, "22023", 1);
		}
		else
			emit_raw(&m, K_BIG, body.data, body.len - 2, "22P02", 1);
	}
	free(pad.data);
}

/* Bodies too small for a marker. */
static void
gen_tiny(int variant)
{
	static const char *const bodies[] = {"", " ", "\n", "{}", "{\"fz\":1}"};
	Msg m;
	const char *b = bodies[variant % NELEM(bodies)];

	init_msg(&m, &streams[S_T]);
	fprintf(manifests[M_UNMARKED], "%s\t", kinds[K_EMPTY].name);
	put_hex_str(manifests[M_UNMARKED], b);
	fputc('\n', manifests[M_UNMARKED]);
	send_body(&m, b, strlen(b));
}

/* A seq that is not an integer: malformed, not to be rounded (origin fzodd). */
static void
gen_odd_seq(int variant)
{
	static const char *const seqs[] = {"1.5", "0.6", "2.4999", "3.5", "1.0000001"};
	Msg m;

	init_msg(&m, &streams[S_ODD]);
	m.nevents = 1;
	stray_event(&m.ev[0], 0);
	m.ev[0].op = "insert";
	m.ev[0].seq_js = seqs[variant % NELEM(seqs)];
	write_msg(&body, &m);
	emit_raw(&m, K_ODD_SEQ, body.data, body.len, "22%", 1);
}

/*
 * An authentic message for a table whose name (3000 random letters) is too
 * long for an index entry: it must be parked, whole or as an event (the
 * event carries the marker too, so either is found).
 */
static void
gen_longname(void)
{
	Msg m;
	Stream *longs = xrealloc(NULL, sizeof(Stream));
	Buf name = {0}, mark = {0};

	for (int i = 0; i < 3000; i++)
		buf_putc(&name,
				 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[rnd() % 62]);
	*longs = streams[S_U];
	longs->table = name.data;
	init_msg(&m, longs);
	m.nevents = 1;
	stray_event(&m.ev[0], 1);
	buf_printf(&mark, "\"fz\":\"%s\"", m.marker);
	m.ev[0].ev_extra = mark.data;
	write_msg(&body, &m);
	emit_raw(&m, K_LONGNAME, body.data, body.len, "%", 0);
}

/* ---- the run ---- */

typedef struct Fixed
{
	Kind kind;
	int variant;
} Fixed;

static void
run_fixed(const Fixed *f)
{
	kind_count[f->kind]++;
	switch (f->kind)
	{
		case K_DEEP:
			/* the consumer retries a stack overflow before it parks it; evrep_apply does not */
			gen_deep(P.sql ? 1 : 3);
			break;
		case K_BIG:
			gen_big(f->variant);
			break;
		case K_EMPTY:
			gen_tiny(f->variant);
			break;
		case K_LONGNAME:
			gen_longname();
			break;
		default:
			gen_odd_seq(f->variant);
			break;
	}
}

static void
run_random(Kind kind)
{
	kind_count[kind]++;
	switch (kind)
	{
		case K_VALID:
			gen_valid(K_VALID);
			break;
		case K_OOO:
			kind_count[kind]++; /* two messages */
			gen_ooo();
			break;
		case K_DUP:
			gen_dup();
			break;
		case K_MIXED:
			gen_mixed();
			break;
		case K_ROWERR:
			gen_rowerr();
			break;
		case K_UNSUB:
			gen_unsub();
			break;
		case K_DUPKEY_OK:
			gen_dupkey_ok();
			break;
		case K_DUPKEY_RAW:
			gen_dupkey_raw();
			break;
		case K_TYPES_OK:
			gen_types_ok();
			break;
		case K_TYPES_RAW:
			gen_types_raw();
			break;
		case K_FORMAT:
			gen_format();
			break;
		case K_OP:
			gen_op();
			break;
		case K_SEQ_RANGE:
			gen_seq_range();
			break;
		case K_SEQ_BIG:
			gen_seq_big();
			break;
		case K_NUM_VALUE:
			gen_num_value();
			break;
		case K_FORGED:
			gen_forged();
			break;
		case K_NOUSER:
			gen_nouser();
			break;
		case K_SENDER:
			gen_sender();
			break;
		case K_TRUNC:
			gen_trunc();
			break;
		case K_FLIP_STRUCT:
			gen_flip_struct();
			break;
		case K_FLIP_HIGH:
			gen_flip_high();
			break;
		case K_FLIP:
			gen_flip();
			break;
		case K_NUL:
			gen_nul();
			break;
		case K_BADUTF8:
			gen_badutf8();
			break;
		case K_UNICODE_ESC:
			gen_unicode_esc();
			break;
		case K_MIDNEST:
			gen_midnest();
			break;
		case K_NEST_OK:
			gen_nest_ok();
			break;
		default:
			die("internal: kind %d is not random", (int) kind);
	}
}

static long
total_messages(void)
{
	long n = 0;

	for (int k = 0; k < K_NKINDS; k++)
		n += kind_count[k];
	return n;
}

/* n messages: random kinds, and a handful of the rare ones spread over the run */
static void
run(long n)
{
	Fixed fixed[32];
	int nfixed = 0, next_fixed = 0, total_w = 0;

	if (P.sql)
	{
		for (int i = 0; i < 12; i++)
			fixed[nfixed++] = (Fixed){K_DEEP, i};
		fixed[nfixed++] = (Fixed){K_BIG, 0};
		fixed[nfixed++] = (Fixed){K_BIG, 3};
		for (int i = 0; i < 5; i++)
			fixed[nfixed++] = (Fixed){K_ODD_SEQ, i};
		for (int i = 2; i < 5; i++)
			fixed[nfixed++] = (Fixed){K_EMPTY, i};
		for (int i = 0; i < 2; i++)
			fixed[nfixed++] = (Fixed){K_LONGNAME, i};
	}
	else
	{
		for (int i = 0; i < 3; i++)
			fixed[nfixed++] = (Fixed){K_DEEP, i};
		for (int i = 0; i < 4; i++)
			fixed[nfixed++] = (Fixed){K_BIG, i};
		for (int i = 0; i < 5; i++)
			fixed[nfixed++] = (Fixed){K_EMPTY, i};
	}
	for (int k = 0; k < K_NKINDS; k++)
		total_w += P.sql ? kinds[k].weight_sql : kinds[k].weight_broker;

	while (total_messages() < n)
	{
		long done = total_messages();
		int r;
		Kind kind = K_VALID;

		if (next_fixed < nfixed && done >= (next_fixed + 1) * (n / (nfixed + 1)))
		{
			run_fixed(&fixed[next_fixed++]);
			continue;
		}
		r = rnd_int(total_w);
		for (int k = 0; k < K_NKINDS; k++)
		{
			int w = P.sql ? kinds[k].weight_sql : kinds[k].weight_broker;

			if (r < w)
			{
				kind = (Kind) k;
				break;
			}
			r -= w;
		}
		if (kind == K_OOO && done + 2 > n)
			kind = K_VALID;
		run_random(kind);
	}
}

static void
write_stream(const Stream *s)
{
	FILE *f = manifests[M_STREAMS];

	fprintf(f, "%s\t", s->origin);
	put_hex_str(f, s->schema);
	fputc('\t', f);
	put_hex_str(f, s->table);
	fprintf(f, "\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\n", s->applied, s->skipped,
			s->parked, s->last_seq);
}

static void
write_model(void)
{
	for (int i = 0; i < nrows; i++)
	{
		if (!rows[i].present)
			continue;
		fprintf(manifests[M_ROWS], "%d\t", P.id_base + i);
		put_hex_str(manifests[M_ROWS], rows[i].name ? rows[i].name : "");
		if (rows[i].credit_null)
			fputs("\t\\N\n", manifests[M_ROWS]);
		else
			fprintf(manifests[M_ROWS], "\t%ld\n", rows[i].credit);
	}
	for (int i = 0; i < S_COUNT; i++)
		if (streams[i].used)
			write_stream(&streams[i]);
	for (int k = 0; k < K_NKINDS; k++)
		if (kind_count[k])
			fprintf(manifests[M_KINDS], "%s\t%ld\n", kinds[k].name, kind_count[k]);
}

static void
setup_path(bool sql, const char *name, uint64_t seed)
{
	P.sql = sql;
	P.name = name;
	P.prefix = (char) (name[0] - 'a' + 'A');
	P.origin = sql ? "fzsql" : "fuzzer";
	P.origin_big = sql ? "fzsqlbig" : "fzbig";
	P.id_base = sql ? 1000000 : strcmp(name, "tail") == 0 ? 2500000 : 1;
	rng_state = seed * 4 + (uint64_t) name[0];
	init_streams();
	init_flip_streams();
}

/* The tail: a long table name, then a valid event behind it, which must be applied. */
static void
run_tail(void)
{
	Msg m;

	kind_count[K_LONGNAME]++;
	gen_longname();
	init_msg(&m, &streams[S_T]);
	m.nevents = 1;
	new_insert(&m.ev[0], true);
	m.ev[0].name = xstrdup("sentinel");
	m.ev[0].seq = 3 * HIGH_SEQ; /* news to the stream the broker run used */
	write_msg(&body, &m);
	emit_parsed(&m, K_SENTINEL);
	kind_count[K_SENTINEL]++;
}

int
main(int argc, char **argv)
{
	struct timespec t0, t1;
	const char *dir;
	bool sql = argc == 5 && strcmp(argv[1], "sql") == 0;
	bool brk = argc == 6 && strcmp(argv[1], "broker") == 0;
	bool tail = argc == 5 && strcmp(argv[1], "tail") == 0;

	if (!sql && !brk && !tail)
	{
		fprintf(stderr, "usage: evrep_fuzz broker URL SEED N OUTDIR\n"
						"       evrep_fuzz sql SEED N OUTDIR\n"
						"       evrep_fuzz tail URL SEED OUTDIR\n");
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (sql)
	{
		char name[4096];

		setup_path(true, "sql", strtoull(argv[2], NULL, 10));
		dir = argv[4];
		snprintf(name, sizeof(name), "%s/sql.tsv", dir);
		if ((sql_out = fopen(name, "w")) == NULL)
			die("cannot write %s: %s", name, strerror(errno));
		open_manifests(dir, P.name);
		run(atol(argv[3]));
		if (fclose(sql_out) != 0)
			die("cannot write %s: %s", name, strerror(errno));
	}
	else
	{
		setup_path(false, brk ? "broker" : "tail", strtoull(argv[3], NULL, 10));
		dir = brk ? argv[5] : argv[4];
		open_manifests(dir, P.name);
		broker_open(argv[2]);
		if (brk)
			run(atol(argv[4]));
		else
			run_tail();
		broker_finish();
	}
	write_model();
	close_manifests();
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%s: %ld messages %s in %.1f s", P.name, sql ? sql_n : (long) published,
		   sql ? "written" : "published",
		   (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9);
	if (!sql)
		printf(" (%" PRIu64 " bytes; %" PRIu64 " confirmed, %" PRIu64 " nacked, %" PRIu64
			   " returned)",
			   bytes_published, nconfirmed, nacked, returned);
	putchar('\n');
	if (!sql && (nacked || returned || nconfirmed != published))
		die("not every message was confirmed and routed");
	return 0;
}
