/*
 * row_json.h
 *		How evrep writes a row as a JSON object (see row_json.c).
 */
#ifndef EVREP_ROW_JSON_H
#define EVREP_ROW_JSON_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "lib/stringinfo.h"

/* Appends the row as a JSON object of its columns, by name. */
extern void row_json_append(StringInfo buf, HeapTuple tuple, TupleDesc desc);

/* The same, as a json Datum. */
extern Datum row_json(HeapTuple tuple, TupleDesc desc);

/*
 * The same with the attributes of mask only (one bool per attribute of
 * desc; NULL: all): a column list (contract.h).
 */
extern void row_json_append_columns(StringInfo buf, HeapTuple tuple, TupleDesc desc,
									const bool *mask);
extern Datum row_json_columns(HeapTuple tuple, TupleDesc desc, const bool *mask);

/*
 * The same, or (Datum) 0 if the object would pass limit bytes; no value's
 * form that large is made on the way (limit 0: no limit, at most 512 MB).
 */
extern Datum row_json_bounded(HeapTuple tuple, TupleDesc desc, const bool *mask, Size limit);

/* A value's text form, under the settings the JSON of a row is written with. */
extern char *row_json_text_form(Oid typid, Datum value);

/*
 * Is a column of this type written as a JSON string of its text (json,
 * jsonb, or a domain over them)?  jsonb_populate_record would take such a
 * string for the value itself, so a reader converts its text instead.
 */
extern bool row_json_is_text_of_json(Oid typid);

#endif /* EVREP_ROW_JSON_H */
