//! Fidelity: a corpus exercising every object kind `sync` must carry, synced into an empty
//! target and into a drifted one, then compared equal by `check` (checksums), by the schema
//! signature, by `pg_dump --schema-only` text, and by sequence values.

use receiptdb_postgres::compare::{self, CompareOptions, Method};
use receiptdb_postgres::pgbin::client_command;
use receiptdb_postgres::sync::{self, SyncMode, SyncOptions};
use receiptdb_postgres::testing::TestCluster;

const CORPUS: &str = r#"
CREATE TYPE public.status AS ENUM ('new', 'billed', 'paid');
CREATE DOMAIN public.yen AS numeric(12,0) CHECK (VALUE >= 0);
CREATE TYPE public.pair AS (a int, b text);
CREATE SCHEMA "Billing Dept";

CREATE TABLE public.patients (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    kana text,
    name_len int GENERATED ALWAYS AS (length(name)) STORED,
    tags public.status[] DEFAULT '{}',
    extra public.pair,
    doctor_id int
);
CREATE TABLE public.doctors (
    id int PRIMARY KEY,
    name text,
    head_patient bigint REFERENCES public.patients (id) DEFERRABLE INITIALLY DEFERRED
);
-- a foreign-key cycle: patients -> doctors -> patients
ALTER TABLE public.patients ADD CONSTRAINT patients_doctor_fk
    FOREIGN KEY (doctor_id) REFERENCES public.doctors (id) DEFERRABLE INITIALLY DEFERRED;

CREATE SEQUENCE "Billing Dept".receipt_no START 1000 INCREMENT 5;
CREATE TABLE "Billing Dept"."Receipts" (
    no int DEFAULT nextval('"Billing Dept".receipt_no') PRIMARY KEY,
    patient_id bigint REFERENCES public.patients (id),
    amount public.yen NOT NULL,
    state public.status NOT NULL DEFAULT 'new',
    issued date NOT NULL,
    raw bytea,
    flags bool[],
    score double precision,
    at timestamptz DEFAULT now()
) ;
CREATE INDEX receipts_issued ON "Billing Dept"."Receipts" (issued);

CREATE TABLE public.visits (id serial, visited date NOT NULL, note text, PRIMARY KEY (id, visited))
    PARTITION BY RANGE (visited);
CREATE TABLE public.visits_2023 PARTITION OF public.visits FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE public.visits_2024 PARTITION OF public.visits FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');

CREATE TABLE public.audit (at timestamptz DEFAULT now(), what text);
CREATE FUNCTION public.audit_receipt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.audit (what) VALUES (TG_OP || ' ' || NEW.no);
  RETURN NEW;
END $$;
CREATE TRIGGER receipts_audit AFTER INSERT ON "Billing Dept"."Receipts"
    FOR EACH ROW EXECUTE FUNCTION public.audit_receipt();
CREATE FUNCTION public.total(p bigint) RETURNS numeric LANGUAGE sql STABLE
    AS $$ SELECT coalesce(sum(amount), 0) FROM "Billing Dept"."Receipts" WHERE patient_id = p $$;
CREATE VIEW public.patient_totals AS
    SELECT p.id, p.name, public.total(p.id) AS total FROM public.patients p;

BEGIN;
INSERT INTO public.doctors VALUES (1, 'Dr. A', 1), (2, 'Dr. B', NULL);
INSERT INTO public.patients (name, kana, tags, extra, doctor_id)
    SELECT 'patient ' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'カナ' || g END,
           ARRAY['new', 'paid']::public.status[], ROW(g, 'x' || g)::public.pair, 1 + g % 2
    FROM generate_series(1, 300) g;
COMMIT;
INSERT INTO "Billing Dept"."Receipts" (patient_id, amount, state, issued, raw, flags, score)
    SELECT 1 + g % 300, g * 10, (ARRAY['new','billed','paid'])[1 + g % 3]::public.status,
           date '2024-01-01' + g % 365, decode(md5(g::text), 'hex'), ARRAY[g % 2 = 0, NULL],
           g / 7.0
    FROM generate_series(1, 2000) g;
INSERT INTO public.visits (visited, note)
    SELECT date '2023-06-01' + g, 'visit ' || g FROM generate_series(1, 400) g;
SELECT nextval('"Billing Dept".receipt_no') FROM generate_series(1, 3);
"#;

/// Drift: data, schema and sequence changes a real divergence could bring.
const DRIFT: &str = r#"
ALTER TABLE public.patients DISABLE TRIGGER ALL;
DELETE FROM "Billing Dept"."Receipts" WHERE no % 7 = 0;
UPDATE public.patients SET kana = 'changed' WHERE id = 5;
DROP TRIGGER receipts_audit ON "Billing Dept"."Receipts";
ALTER TABLE public.audit ADD COLUMN extra int;
CREATE TABLE public.stray (a int);
INSERT INTO public.stray VALUES (1);
ALTER TYPE public.status ADD VALUE 'void';
DROP VIEW public.patient_totals;
ALTER SEQUENCE "Billing Dept".receipt_no RESTART WITH 7;
ALTER TABLE public.patients ENABLE TRIGGER ALL;
"#;

fn opts() -> CompareOptions {
    CompareOptions {
        method: Method::Checksums,
        jobs: 2,
        max_rate: None,
    }
}

/// `pg_dump --schema-only` as text, without the lines that legitimately differ.
async fn schema_text(c: &TestCluster, db: &str) -> String {
    let out = client_command("pg_dump", &c.target(db))
        .args(["--schema-only", "--no-publications", "--no-subscriptions"])
        .output()
        .await
        .expect("run pg_dump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn next_receipt_no(c: &TestCluster, db: &str) -> i64 {
    c.client(db)
        .await
        .query_one(r#"SELECT nextval('"Billing Dept".receipt_no')"#, &[])
        .await
        .unwrap()
        .get(0)
}

async fn assert_same(c: &TestCluster) {
    let r = compare::compare(&c.target("src"), &c.target("tgt"), opts())
        .await
        .unwrap();
    assert!(r.equal, "after sync: {r:#?}");
    assert_eq!(r.summary.tables_compared, 6, "{:?}", r.tables);
    assert_eq!(schema_text(c, "src").await, schema_text(c, "tgt").await);
    // Triggers did not fire during the load: the audit table holds the source's rows only.
    let count = |db: &'static str| async move {
        let row = c
            .client(db)
            .await
            .query_one("SELECT count(*) FROM audit", &[])
            .await
            .unwrap();
        row.get::<_, i64>(0)
    };
    assert_eq!(count("src").await, count("tgt").await);
    // Identity and sequence values carried.
    assert_eq!(
        next_receipt_no(c, "src").await,
        next_receipt_no(c, "tgt").await
    );
    let ins = "INSERT INTO patients (name) VALUES ('new one') RETURNING id, name_len";
    let a = c.client("src").await.query_one(ins, &[]).await.unwrap();
    let b = c.client("tgt").await.query_one(ins, &[]).await.unwrap();
    assert_eq!(
        (a.get::<_, i64>(0), a.get::<_, i32>(1)),
        (b.get::<_, i64>(0), b.get::<_, i32>(1))
    );
    // The trigger works on the target after the sync.
    c.client("tgt")
        .await
        .batch_execute(
            r#"INSERT INTO "Billing Dept"."Receipts" (amount, issued) VALUES (1, '2024-01-01')"#,
        )
        .await
        .unwrap();
    assert_eq!(count("tgt").await, 1 + count("src").await);
}

#[tokio::test]
async fn corpus_syncs_into_an_empty_and_a_drifted_target() {
    let c = TestCluster::start();
    c.create_db_with("src", CORPUS).await;
    c.create_db("tgt").await;

    // Empty target: schema differences, so a rebuild.
    let r = sync::sync(&c.target("src"), &c.target("tgt"), SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.mode, SyncMode::Rebuild, "{r:#?}");
    assert_eq!(r.tables.len(), 6);
    assert_eq!(r.rows, 2 + 300 + 2000 + 400 + 2000, "audit holds 2000 rows");
    assert!(
        r.tables.iter().any(|t| t.format == "text"),
        "enum arrays go as text"
    );
    assert!(r.tables.iter().any(|t| t.format == "binary"));
    assert_same(&c).await;

    // Drifted target: start again from the corpus, then drift.
    for db in ["src", "tgt"] {
        let drop = format!("DROP DATABASE {db}");
        c.client("postgres")
            .await
            .batch_execute(&drop)
            .await
            .unwrap();
    }
    c.create_db_with("src", CORPUS).await;
    c.create_db_with("tgt", CORPUS).await;
    c.client("tgt")
        .await
        .batch_execute(DRIFT)
        .await
        .expect("drift");
    let before = compare::compare(&c.target("src"), &c.target("tgt"), opts())
        .await
        .unwrap();
    assert!(!before.equal && !before.schema_differences.is_empty());
    let r = sync::sync(&c.target("src"), &c.target("tgt"), SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.mode, SyncMode::Rebuild);
    assert_same(&c).await;
}
