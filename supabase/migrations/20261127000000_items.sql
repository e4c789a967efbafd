-- Items owned by Supabase Auth users. Row level security is the only thing that keeps one
-- user's rows from another: the app reaches this table through PostgREST with the user's own
-- JWT, never with a service key, so every policy below is the access control.

create extension if not exists pg_trgm with schema extensions;

create table public.items (
  id bigint generated always as identity primary key,
  -- Filled from the verified JWT, so clients never send it (and cannot pick someone else's).
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 200),
  description text not null default '' check (char_length(description) <= 2000),
  quantity integer not null default 0 check (quantity >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- The list page: one user's rows, newest first, paged.
create index items_user_id_id_idx on public.items (user_id, id desc);
-- The search box: ilike '%q%' on either column (a trigram index serves infix patterns).
create index items_name_trgm_idx on public.items using gin (name extensions.gin_trgm_ops);
create index items_description_trgm_idx
  on public.items using gin (description extensions.gin_trgm_ops);

create function public.items_set_updated_at() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end;
$$;

create trigger items_set_updated_at
  before update on public.items
  for each row execute function public.items_set_updated_at();

alter table public.items enable row level security;

-- `(select auth.uid())` instead of `auth.uid()`: evaluated once per statement, not per row.
create policy "items: owners select" on public.items
  for select to authenticated
  using ((select auth.uid()) = user_id);

create policy "items: owners insert" on public.items
  for insert to authenticated
  with check ((select auth.uid()) = user_id);

create policy "items: owners update" on public.items
  for update to authenticated
  using ((select auth.uid()) = user_id)
  with check ((select auth.uid()) = user_id);

create policy "items: owners delete" on public.items
  for delete to authenticated
  using ((select auth.uid()) = user_id);

-- Supabase's default privileges grant everything on new public tables to anon too; signed-out
-- visitors have no business here at all, so take that away rather than rely on RLS alone.
revoke all on table public.items from anon;
grant select, insert, update, delete on table public.items to authenticated;
