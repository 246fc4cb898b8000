-- The tables of both service databases (customer_db and order_db): each
-- holds both, with these definitions, so a replicated row always fits.
-- Included by customer_db.sql and order_db.sql (\ir); what each database
-- owns and replicates is said there.
-- Idempotent: safe to run again.

CREATE TABLE IF NOT EXISTS customer (
    id            integer PRIMARY KEY,
    customer_name text    NOT NULL,
    credit_limit  integer NOT NULL
);

CREATE TABLE IF NOT EXISTS orders (
    id            integer PRIMARY KEY,
    order_amount  integer NOT NULL,
    status        text    NOT NULL,
    customer_id   integer NOT NULL
);

CREATE INDEX IF NOT EXISTS orders_customer_id_idx ON orders (customer_id);
