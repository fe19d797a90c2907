-- Why an admin banned a user, shown to admins; cleared on unban.
ALTER TABLE users ADD COLUMN ban_reason text CHECK (char_length(ban_reason) <= 500);
