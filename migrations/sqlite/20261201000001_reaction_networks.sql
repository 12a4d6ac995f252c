-- brigading-resistant trending: the network each reaction's last change came from, as a keyed
-- hash (the same as in the postgresql migration of this version, which explains it): 16 bytes,
-- or null when not known (reactions stored before this migration, or written while the day's
-- salt could not be read), which count towards no article's networks.
alter table reactions add column network blob check (length(network) = 16);

-- trending counts the distinct networks of one article's reactions in its recent window: the
-- time-series index carries the network too, so that the count is read from the index alone.
create index reactions_article_updated_at_network_idx on reactions (article_id, updated_at, reaction, network);
drop index reactions_article_updated_at_idx;
