-- Why an admin banned a user, shown to admins; cleared on unban. The same fact as
-- migrations/postgres/20261202000101_ban_reason.sql.
ALTER TABLE users ADD COLUMN ban_reason TEXT CHECK (length(ban_reason) <= 500);
