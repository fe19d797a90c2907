-- The video model the seller chose for the order (tried first; NULL: the configured order).
-- The same fact as migrations/postgres/20261202000201_order_model.sql.
ALTER TABLE orders ADD COLUMN model TEXT CHECK (length(model) BETWEEN 1 AND 100);
