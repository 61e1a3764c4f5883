


SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;


CREATE SCHEMA __SCHEMA__;


SET default_tablespace = '';

SET default_table_access_method = heap;


CREATE TABLE __SCHEMA__.langswarm_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);



CREATE TABLE __SCHEMA__.messages (
    session_id text NOT NULL,
    seq bigint NOT NULL,
    role text NOT NULL,
    content text NOT NULL,
    status text NOT NULL,
    usage jsonb,
    provider_message_id text,
    created_at double precision NOT NULL,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL
);



CREATE TABLE __SCHEMA__.sessions (
    session_id text NOT NULL,
    user_id text NOT NULL,
    updated_at double precision NOT NULL,
    version bigint DEFAULT 0 NOT NULL,
    next_seq bigint DEFAULT 1 NOT NULL,
    record jsonb NOT NULL
);



INSERT INTO __SCHEMA__.langswarm_migrations VALUES (1, 'initial', '2026-12-02 00:44:07.827433+00');



INSERT INTO __SCHEMA__.messages VALUES ('s-hybrid-0001', 1, 'user', 'question 0 — ⚡', 'committed', NULL, NULL, 1764000000, '{}');
INSERT INTO __SCHEMA__.messages VALUES ('s-hybrid-0001', 2, 'assistant', 'answer 0
with a second line', 'committed', '{"input_tokens": 10, "cached_tokens": 0, "output_tokens": 5}', 'msg_0', 1764000000.5, '{"model": "echo-1", "provider": "local"}');
INSERT INTO __SCHEMA__.messages VALUES ('s-hybrid-0001', 3, 'user', 'question 1 — ⚡', 'committed', NULL, NULL, 1764000001, '{}');
INSERT INTO __SCHEMA__.messages VALUES ('s-hybrid-0001', 4, 'assistant', 'answer 1
with a second line', 'committed', '{"input_tokens": 11, "cached_tokens": 1, "output_tokens": 5}', 'msg_1', 1764000001.5, '{"model": "echo-1", "provider": "local"}');
INSERT INTO __SCHEMA__.messages VALUES ('s-hybrid-0001', 5, 'user', 'question 2 — ⚡', 'committed', NULL, NULL, 1764000002, '{}');
INSERT INTO __SCHEMA__.messages VALUES ('s-hybrid-0001', 6, 'assistant', 'answer 2
with a second line', 'committed', '{"input_tokens": 12, "cached_tokens": 2, "output_tokens": 5}', 'msg_2', 1764000002.5, '{"model": "echo-1", "provider": "local"}');
INSERT INTO __SCHEMA__.messages VALUES ('s-hybrid-0001', 7, 'user', 'question 3 — ⚡', 'committed', NULL, NULL, 1764000003, '{}');
INSERT INTO __SCHEMA__.messages VALUES ('s-hybrid-0001', 8, 'assistant', 'answer 3
with a second line', 'committed', '{"input_tokens": 13, "cached_tokens": 3, "output_tokens": 5}', 'msg_3', 1764000003.5, '{"model": "echo-1", "provider": "local"}');
INSERT INTO __SCHEMA__.messages VALUES ('s-hybrid-0001', 9, 'user', 'question 4 — ⚡', 'committed', NULL, NULL, 1764000004, '{}');
INSERT INTO __SCHEMA__.messages VALUES ('s-hybrid-0001', 10, 'assistant', 'answer 4
with a second line', 'committed', '{"input_tokens": 14, "cached_tokens": 4, "output_tokens": 5}', 'msg_4', 1764000004.5, '{"model": "echo-1", "provider": "local"}');
INSERT INTO __SCHEMA__.messages VALUES ('s-hybrid-0001', 11, 'user', 'this one failed', 'failed', NULL, NULL, 1764000010, '{}');
INSERT INTO __SCHEMA__.messages VALUES ('s-hybrid-0001', 12, 'summary', 'earlier: five questions', 'committed', NULL, NULL, 1764000011, '{}');
INSERT INTO __SCHEMA__.messages VALUES ('s-native-0002', 1, 'user', 'hello', 'committed', NULL, NULL, 1764000021, '{}');
INSERT INTO __SCHEMA__.messages VALUES ('s-native-0002', 2, 'assistant', 'hi bob', 'committed', '{"input_tokens": 3, "cached_tokens": 0, "output_tokens": 2}', 'msg_n1', 1764000022, '{}');
INSERT INTO __SCHEMA__.messages VALUES ('s-native-0002', 3, 'user', 'cut off', 'interrupted', NULL, NULL, 1764000023, '{}');
INSERT INTO __SCHEMA__.messages VALUES ('s-native-0002', 4, 'user', 'still pending', 'pending', NULL, NULL, 1764000024, '{}');



INSERT INTO __SCHEMA__.sessions VALUES ('s-hybrid-0001', 'alice', 1764000000, 0, 13, '{"model": "echo-1", "usage": {"input_tokens": 0, "cached_tokens": 0, "output_tokens": 0}, "backend": "hybrid", "user_id": "alice", "metadata": {"n": 3, "topic": "upgrade"}, "provider": "local", "created_at": 1764000000.0, "middleware": [{"type": "pii_filter", "entities": ["email"]}], "session_id": "s-hybrid-0001", "updated_at": 1764000000.0, "system_prompt": "You help alice. Ünïcödé ✓", "provider_state": {}}');
INSERT INTO __SCHEMA__.sessions VALUES ('s-native-0002', 'bob', 1764000020, 0, 5, '{"model": "gpt-5", "usage": {"input_tokens": 0, "cached_tokens": 0, "output_tokens": 0}, "backend": "native", "user_id": "bob", "metadata": {}, "provider": "openai", "created_at": 1764000020.0, "middleware": [], "session_id": "s-native-0002", "updated_at": 1764000020.0, "system_prompt": null, "provider_state": {"conversation_id": "conv_abc123"}}');
INSERT INTO __SCHEMA__.sessions VALUES ('s-empty-0003', 'alice', 1764000030, 0, 1, '{"model": null, "usage": {"input_tokens": 0, "cached_tokens": 0, "output_tokens": 0}, "backend": "hybrid", "user_id": "alice", "metadata": {}, "provider": "local", "created_at": 1764000030.0, "middleware": [], "session_id": "s-empty-0003", "updated_at": 1764000030.0, "system_prompt": null, "provider_state": {}}');



ALTER TABLE ONLY __SCHEMA__.langswarm_migrations
    ADD CONSTRAINT langswarm_migrations_pkey PRIMARY KEY (version);



ALTER TABLE ONLY __SCHEMA__.messages
    ADD CONSTRAINT messages_pkey PRIMARY KEY (session_id, seq);



ALTER TABLE ONLY __SCHEMA__.sessions
    ADD CONSTRAINT sessions_pkey PRIMARY KEY (session_id);



CREATE INDEX sessions_by_updated ON __SCHEMA__.sessions USING btree (updated_at DESC, session_id DESC);



CREATE INDEX sessions_by_user ON __SCHEMA__.sessions USING btree (user_id, updated_at DESC, session_id DESC);



ALTER TABLE ONLY __SCHEMA__.messages
    ADD CONSTRAINT messages_session_id_fkey FOREIGN KEY (session_id) REFERENCES __SCHEMA__.sessions(session_id) ON DELETE CASCADE;




