-- The video model the seller chose for the order (tried first; NULL: the configured order).
ALTER TABLE orders ADD COLUMN model text CHECK (char_length(model) BETWEEN 1 AND 100);
