-- daily salts for anonymous visitor fingerprints.
--
-- a visitor without an id header or cookie is recognised by a keyed hash of (salt, client ip,
-- user-agent). the salt is random, one per utc day, shared by every instance through this table,
-- and deleted 48 hours after it was created: once it is gone, nobody (not even with the server
-- secret) can recompute which ip and user-agent produced a fingerprint.
create table visitor_salts (
    -- the utc day, 'yyyy-mm-dd'.
    day text primary key check (day glob '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
    salt blob not null check (length(salt) = 32),
    created_at integer not null default (cast(unixepoch('subsec') * 1000000 as integer))
) strict;
