-- visitors are no longer recognised by a fingerprint of (salt, client ip, user-agent).
--
-- everyone behind one address with one browser build shared a fingerprint, so one reader could
-- switch, undo, erase or read another's reactions through it. a write without an id header or
-- cookie is now a new visitor with a random cookie, and the daily salts, which let a copy of
-- the database test guesses of addresses and browsers, go with the fingerprints.
drop table if exists visitor_salts;
