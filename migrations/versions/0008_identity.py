"""Identity: people, machine tokens, console sessions and the append-only audit log (schema ``identity``).

Secrets are never stored: API tokens and session cookies as SHA-256 (they are 256 random bits),
passwords as argon2id hashes. Roles and scopes are checked by the application; the CHECKs below only
keep obviously broken rows out.

Revision ID: 0008_identity
Revises: 0007_scorer_rating_input
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_identity"
down_revision: str | None = "0007_scorer_rating_input"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = "('admin', 'manager', 'csm', 'viewer')"


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS identity")
    # segments NULL = every segment; '{}' = none. accounts: account ids a CSM owns besides owner_email.
    op.execute(
        f"""
        CREATE TABLE identity.users (
            user_id text PRIMARY KEY CHECK (user_id ~ '^u_[0-9a-f]{{16,32}}$'),
            email text NOT NULL CHECK (email = lower(email) AND position('@' IN email) > 1
                                       AND length(email) <= 320),
            display_name text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
            role text NOT NULL CHECK (role IN {ROLES}),
            segments text[],
            accounts text[] NOT NULL DEFAULT '{{}}',
            password_hash text,
            oidc_issuer text,
            oidc_subject text,
            disabled boolean NOT NULL DEFAULT false,
            failed_sign_ins integer NOT NULL DEFAULT 0 CHECK (failed_sign_ins >= 0),
            locked_until timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            last_sign_in_at timestamptz,
            CHECK ((oidc_issuer IS NULL) = (oidc_subject IS NULL))
        )
        """
    )
    op.execute("CREATE UNIQUE INDEX users_email ON identity.users (email)")
    op.execute(
        "CREATE UNIQUE INDEX users_oidc ON identity.users (oidc_issuer, oidc_subject) "
        "WHERE oidc_issuer IS NOT NULL"
    )
    op.execute(
        f"""
        CREATE TABLE identity.api_tokens (
            token_id text PRIMARY KEY CHECK (token_id ~ '^[0-9a-f]{{12}}$'),
            token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
            name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
            role text NOT NULL CHECK (role IN {ROLES}),
            scopes text[] NOT NULL,
            segments text[],
            accounts text[] NOT NULL DEFAULT '{{}}',
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz,
            revoked_at timestamptz,
            revoked_by text,
            last_used_at timestamptz
        )
        """
    )
    op.execute(
        """
        CREATE TABLE identity.sessions (
            session_hash bytea PRIMARY KEY CHECK (length(session_hash) = 32),
            user_id text NOT NULL REFERENCES identity.users (user_id) ON DELETE CASCADE,
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            last_seen_at timestamptz,
            ended_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX sessions_user ON identity.sessions (user_id)")
    op.execute("CREATE INDEX sessions_expires ON identity.sessions (expires_at)")
    # Who (a principal's log name), what, when, from where, to what. Never customers' personal data.
    op.execute(
        """
        CREATE TABLE identity.audit_log (
            audit_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT now(),
            actor text NOT NULL,
            action text NOT NULL,
            service text NOT NULL,
            outcome text NOT NULL CHECK (outcome IN ('ok', 'denied', 'failed')),
            target text,
            source_ip inet,
            details jsonb NOT NULL DEFAULT '{}'::jsonb
        )
        """
    )
    op.execute("CREATE INDEX audit_log_at ON identity.audit_log (at)")
    op.execute("CREATE INDEX audit_log_actor ON identity.audit_log (actor, audit_id)")
    op.execute("CREATE INDEX audit_log_target ON identity.audit_log (target, audit_id) WHERE target IS NOT NULL")
    # Append-only: updates and truncation are refused; deletes only inside the retention job's
    # transaction, which sets csat.audit_purge (a guard against application bugs, not against a DBA).
    op.execute(
        """
        CREATE FUNCTION identity.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' AND current_setting('csat.audit_purge', true) = 'on' THEN
                RETURN OLD;
            END IF;
            RAISE EXCEPTION 'identity.audit_log is append-only (% refused)', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON identity.audit_log "
        "FOR EACH ROW EXECUTE FUNCTION identity.audit_log_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON identity.audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION identity.audit_log_append_only()"
    )


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS identity CASCADE")
