-- hourly and daily rollups of the reactions held, for dashboard windows of any length: the
-- counterpart of migrations/20261127000001_stats_rollups.sql.
--
-- a stats window counts the reactions currently held whose last change (updated_at) falls in it.
-- reading those rows costs in proportion to the window. these tables hold, per article and utc
-- hour (and per article and utc day), how many of the reactions held now last changed in that
-- hour (day), one column per reaction. a window is read as whole days from reaction_counts_daily,
-- whole hours at its ends from reaction_counts_hourly, and only the partial hours at its two ends
-- from reactions (src/domain/window.rs, `WindowParts`).
--
-- invariant: for every article, bucket and reaction r, the r column equals the number of rows in
-- reactions of that article holding r whose updated_at falls in the bucket. row-level triggers on
-- reactions keep it, in the transaction of the change, whoever writes: the service, an older
-- version of it, or an operator by hand.
--
-- a bucket starts at a multiple of its width (3600000000 µs for an hour, 86400000000 µs for a
-- day) from the epoch. `t - ((t % w) + w) % w` rounds t down to one, before 1970 too, where
-- sqlite's % answers a negative remainder.

create table reaction_counts_hourly (
    -- compared byte by byte, like reactions.article_id.
    article_id text not null,
    -- the start of a utc hour, in microseconds since the epoch.
    bucket_start integer not null,
    like_count integer not null default 0,
    dislike_count integer not null default 0,
    love_count integer not null default 0,
    funny_count integer not null default 0,
    angry_count integer not null default 0,
    sad_count integer not null default 0,
    wow_count integer not null default 0,
    primary key (article_id, bucket_start),
    check (like_count >= 0 and dislike_count >= 0 and love_count >= 0 and funny_count >= 0
           and angry_count >= 0 and sad_count >= 0 and wow_count >= 0)
) strict, without rowid;

-- the same per utc day (a bucket starts at midnight utc). sqlite has no `create table … (like …)`.
create table reaction_counts_daily (
    article_id text not null,
    bucket_start integer not null,
    like_count integer not null default 0,
    dislike_count integer not null default 0,
    love_count integer not null default 0,
    funny_count integer not null default 0,
    angry_count integer not null default 0,
    sad_count integer not null default 0,
    wow_count integer not null default 0,
    primary key (article_id, bucket_start),
    check (like_count >= 0 and dislike_count >= 0 and love_count >= 0 and funny_count >= 0
           and angry_count >= 0 and sad_count >= 0 and wow_count >= 0)
) strict, without rowid;

-- site-wide windows read a bucket range over all articles; one article's time series reads the
-- primary key.
create index reaction_counts_hourly_bucket_idx on reaction_counts_hourly (bucket_start);
create index reaction_counts_daily_bucket_idx on reaction_counts_daily (bucket_start);

-- a row counts +1 in the bucket of its updated_at when inserted, -1 there when deleted, and when
-- updated -1 where it was and +1 where it is now. sqlite triggers are per row; a batch of the
-- service changes each row by one statement anyway.
--
-- an increment is an upsert. sqlite checks the check constraint on the row an insert proposes,
-- before on conflict applies, so the proposed row carries only the +1 (never a negative). a
-- decrement is a plain update: the row it takes from exists, since the reaction was counted there
-- (`reaction = 'like'` is 1 or 0).

create trigger reactions_rollups_insert after insert on reactions
begin
    insert into reaction_counts_hourly (article_id, bucket_start, like_count, dislike_count,
                                        love_count, funny_count, angry_count, sad_count, wow_count)
    values (new.article_id, new.updated_at - ((new.updated_at % 3600000000) + 3600000000) % 3600000000,
            new.reaction = 'like', new.reaction = 'dislike', new.reaction = 'love',
            new.reaction = 'funny', new.reaction = 'angry', new.reaction = 'sad', new.reaction = 'wow')
    on conflict (article_id, bucket_start) do update
    set like_count = like_count + excluded.like_count, dislike_count = dislike_count + excluded.dislike_count,
        love_count = love_count + excluded.love_count, funny_count = funny_count + excluded.funny_count,
        angry_count = angry_count + excluded.angry_count, sad_count = sad_count + excluded.sad_count,
        wow_count = wow_count + excluded.wow_count;

    insert into reaction_counts_daily (article_id, bucket_start, like_count, dislike_count,
                                       love_count, funny_count, angry_count, sad_count, wow_count)
    values (new.article_id, new.updated_at - ((new.updated_at % 86400000000) + 86400000000) % 86400000000,
            new.reaction = 'like', new.reaction = 'dislike', new.reaction = 'love',
            new.reaction = 'funny', new.reaction = 'angry', new.reaction = 'sad', new.reaction = 'wow')
    on conflict (article_id, bucket_start) do update
    set like_count = like_count + excluded.like_count, dislike_count = dislike_count + excluded.dislike_count,
        love_count = love_count + excluded.love_count, funny_count = funny_count + excluded.funny_count,
        angry_count = angry_count + excluded.angry_count, sad_count = sad_count + excluded.sad_count,
        wow_count = wow_count + excluded.wow_count;
end;

-- a bucket emptied by deletes keeps its row of zeros, as on postgresql: the reads skip it, and
-- the next reaction in that hour reuses it.
create trigger reactions_rollups_delete after delete on reactions
begin
    update reaction_counts_hourly
    set like_count = like_count - (old.reaction = 'like'), dislike_count = dislike_count - (old.reaction = 'dislike'),
        love_count = love_count - (old.reaction = 'love'), funny_count = funny_count - (old.reaction = 'funny'),
        angry_count = angry_count - (old.reaction = 'angry'), sad_count = sad_count - (old.reaction = 'sad'),
        wow_count = wow_count - (old.reaction = 'wow')
    where article_id = old.article_id
      and bucket_start = old.updated_at - ((old.updated_at % 3600000000) + 3600000000) % 3600000000;

    update reaction_counts_daily
    set like_count = like_count - (old.reaction = 'like'), dislike_count = dislike_count - (old.reaction = 'dislike'),
        love_count = love_count - (old.reaction = 'love'), funny_count = funny_count - (old.reaction = 'funny'),
        angry_count = angry_count - (old.reaction = 'angry'), sad_count = sad_count - (old.reaction = 'sad'),
        wow_count = wow_count - (old.reaction = 'wow')
    where article_id = old.article_id
      and bucket_start = old.updated_at - ((old.updated_at % 86400000000) + 86400000000) % 86400000000;
end;

-- a switch of reaction, a new updated_at, or both (the service never changes article_id, an
-- operator might). each table moves the row only if its (article, bucket, reaction) changed: a
-- new updated_at in the same hour writes neither table, one in another hour of the same day only
-- the hourly one, and an update that changed none of the three columns does not fire the trigger.
-- the columns are not null, so <> is never unknown.
create trigger reactions_rollups_update after update of article_id, reaction, updated_at on reactions
when old.article_id <> new.article_id or old.reaction <> new.reaction
     or old.updated_at <> new.updated_at
begin
    update reaction_counts_hourly
    set like_count = like_count - (old.reaction = 'like'), dislike_count = dislike_count - (old.reaction = 'dislike'),
        love_count = love_count - (old.reaction = 'love'), funny_count = funny_count - (old.reaction = 'funny'),
        angry_count = angry_count - (old.reaction = 'angry'), sad_count = sad_count - (old.reaction = 'sad'),
        wow_count = wow_count - (old.reaction = 'wow')
    where article_id = old.article_id
      and bucket_start = old.updated_at - ((old.updated_at % 3600000000) + 3600000000) % 3600000000
      and (old.article_id <> new.article_id or old.reaction <> new.reaction
           or old.updated_at - ((old.updated_at % 3600000000) + 3600000000) % 3600000000
              <> new.updated_at - ((new.updated_at % 3600000000) + 3600000000) % 3600000000);

    insert into reaction_counts_hourly (article_id, bucket_start, like_count, dislike_count,
                                        love_count, funny_count, angry_count, sad_count, wow_count)
    select new.article_id, new.updated_at - ((new.updated_at % 3600000000) + 3600000000) % 3600000000,
           new.reaction = 'like', new.reaction = 'dislike', new.reaction = 'love',
           new.reaction = 'funny', new.reaction = 'angry', new.reaction = 'sad', new.reaction = 'wow'
    where old.article_id <> new.article_id or old.reaction <> new.reaction
          or old.updated_at - ((old.updated_at % 3600000000) + 3600000000) % 3600000000
             <> new.updated_at - ((new.updated_at % 3600000000) + 3600000000) % 3600000000
    on conflict (article_id, bucket_start) do update
    set like_count = like_count + excluded.like_count, dislike_count = dislike_count + excluded.dislike_count,
        love_count = love_count + excluded.love_count, funny_count = funny_count + excluded.funny_count,
        angry_count = angry_count + excluded.angry_count, sad_count = sad_count + excluded.sad_count,
        wow_count = wow_count + excluded.wow_count;

    update reaction_counts_daily
    set like_count = like_count - (old.reaction = 'like'), dislike_count = dislike_count - (old.reaction = 'dislike'),
        love_count = love_count - (old.reaction = 'love'), funny_count = funny_count - (old.reaction = 'funny'),
        angry_count = angry_count - (old.reaction = 'angry'), sad_count = sad_count - (old.reaction = 'sad'),
        wow_count = wow_count - (old.reaction = 'wow')
    where article_id = old.article_id
      and bucket_start = old.updated_at - ((old.updated_at % 86400000000) + 86400000000) % 86400000000
      and (old.article_id <> new.article_id or old.reaction <> new.reaction
           or old.updated_at - ((old.updated_at % 86400000000) + 86400000000) % 86400000000
              <> new.updated_at - ((new.updated_at % 86400000000) + 86400000000) % 86400000000);

    insert into reaction_counts_daily (article_id, bucket_start, like_count, dislike_count,
                                       love_count, funny_count, angry_count, sad_count, wow_count)
    select new.article_id, new.updated_at - ((new.updated_at % 86400000000) + 86400000000) % 86400000000,
           new.reaction = 'like', new.reaction = 'dislike', new.reaction = 'love',
           new.reaction = 'funny', new.reaction = 'angry', new.reaction = 'sad', new.reaction = 'wow'
    where old.article_id <> new.article_id or old.reaction <> new.reaction
          or old.updated_at - ((old.updated_at % 86400000000) + 86400000000) % 86400000000
             <> new.updated_at - ((new.updated_at % 86400000000) + 86400000000) % 86400000000
    on conflict (article_id, bucket_start) do update
    set like_count = like_count + excluded.like_count, dislike_count = dislike_count + excluded.dislike_count,
        love_count = love_count + excluded.love_count, funny_count = funny_count + excluded.funny_count,
        angry_count = angry_count + excluded.angry_count, sad_count = sad_count + excluded.sad_count,
        wow_count = wow_count + excluded.wow_count;
end;

-- fill the rollups from the reactions held now. sqlite lets one transaction write at a time, and
-- this migration's transaction has held the write lock since its first statement, so no change
-- slips between the fill and the triggers.
insert into reaction_counts_hourly (article_id, bucket_start, like_count, dislike_count,
                                    love_count, funny_count, angry_count, sad_count, wow_count)
select article_id, updated_at - ((updated_at % 3600000000) + 3600000000) % 3600000000,
       sum(reaction = 'like'), sum(reaction = 'dislike'), sum(reaction = 'love'), sum(reaction = 'funny'),
       sum(reaction = 'angry'), sum(reaction = 'sad'), sum(reaction = 'wow')
from reactions
group by 1, 2;

insert into reaction_counts_daily (article_id, bucket_start, like_count, dislike_count,
                                   love_count, funny_count, angry_count, sad_count, wow_count)
select article_id, bucket_start - ((bucket_start % 86400000000) + 86400000000) % 86400000000,
       sum(like_count), sum(dislike_count), sum(love_count), sum(funny_count),
       sum(angry_count), sum(sad_count), sum(wow_count)
from reaction_counts_hourly
group by 1, 2;
