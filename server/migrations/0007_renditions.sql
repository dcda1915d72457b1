-- Optional transcoded lower rendition (480p) per webinar, for mobile viewers.
-- Off by default: the live is passed through as the encoder sent it.
ALTER TABLE webinars ADD COLUMN low_rendition boolean NOT NULL DEFAULT false;
