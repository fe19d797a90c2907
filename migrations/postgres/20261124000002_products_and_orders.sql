-- Products users save, and orders: one tap on "Start", N jobs, charged in one transaction.

CREATE TABLE products (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          bigint      NOT NULL REFERENCES users (id),
    photo_file_id    text,
    photo_mime       text        CHECK (photo_mime IN ('jpeg', 'png', 'webp')),
    marketplace_url  text,
    description      text        NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((photo_file_id IS NULL) = (photo_mime IS NULL))
);

CREATE INDEX products_user ON products (user_id, id);

CREATE TABLE orders (
    id                   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id              bigint      NOT NULL REFERENCES users (id),
    order_key            text        NOT NULL,
    count                int         NOT NULL CHECK (count BETWEEN 1 AND 1000),
    price_per_video      bigint      NOT NULL CHECK (price_per_video >= 0),
    template             text        NOT NULL,
    product_id           bigint      REFERENCES products (id),
    wishes               text,
    user_prompt          text,
    aspect               text        NOT NULL CHECK (aspect IN ('portrait', 'landscape', 'square')),
    duration_secs        int         NOT NULL CHECK (duration_secs > 0),
    language             text        NOT NULL CHECK (language IN ('ru', 'en')),
    -- The worker's single progress message for the order, once it has sent one.
    progress_chat_id     bigint,
    progress_message_id  int,
    created_at           timestamptz NOT NULL DEFAULT now(),
    -- A double tap or a redelivered update places the order once.
    UNIQUE (user_id, order_key)
);

CREATE INDEX orders_user_recent ON orders (user_id, created_at DESC, id DESC);
