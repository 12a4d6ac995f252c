-- brigading-resistant trending: the network each reaction's last change came from, as a keyed
-- hash, so that trending can count how many distinct client networks (ipv4 /24, ipv6 /48) an
-- article's recent reactions come from, and list only articles with enough of them.
--
-- the value is the first 16 bytes of hmac-sha-256, under the service secret, of the day's
-- fingerprint salt (visitor_salts) and the network (src/identity/network.rs): never the address
-- or the network itself. once the day's salt is deleted (48 hours), nobody can tell which network
-- a value stands for; before that, the same network has the same value all day, and another one
-- the next day. null: not known (reactions stored before this migration, or written while the
-- salt could not be read); they count towards no article's networks.
--
-- a nullable column without a default: adding it rewrites nothing, whatever the table's size.
alter table reactions add column network bytea;

-- enforced for every row written from now on. `not valid` skips checking the rows already
-- there, which are all null, instead of reading the whole table under the lock this migration
-- holds; `alter table reactions validate constraint reactions_network_length` checks them later
-- without blocking writes, should anyone want it marked valid.
alter table reactions add constraint reactions_network_length
    check (octet_length(network) = 16) not valid;

-- trending counts the distinct networks of one article's reactions in its recent window, for
-- each article it is about to list: the time-series index, (article_id, updated_at), now carries
-- the network too, so that count is read from the index alone, like the time series.
--
-- building it locks reactions against writes (reads go on) for as long as it takes: seconds per
-- ten million rows. on a large live table, build it by hand first with
-- `create index concurrently` (same name and definition) and drop the old one with
-- `drop index concurrently`; this migration then finds them done and does nothing more.
--
-- the build runs longer than the service's statement timeout on a large table, and the service
-- applies migrations on connections that carry it.
set local statement_timeout = 0;
create index if not exists reactions_article_updated_at_network_idx
    on reactions (article_id, updated_at) include (reaction, network);
drop index if exists reactions_article_updated_at_idx;
