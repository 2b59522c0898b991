BEGIN TRANSACTION;
CREATE TABLE evidence (
	measurement_id INTEGER NOT NULL, 
	data JSON NOT NULL, 
	PRIMARY KEY (measurement_id), 
	FOREIGN KEY(measurement_id) REFERENCES measurements (id) ON DELETE CASCADE
);
INSERT INTO "evidence" VALUES(1,'{"verdict_evidence": {}, "observations": [{"ip": "149.154.167.99", "port": 443, "failure": null, "connect_ms": null, "duration_ms": 40.0, "error": null, "kind": "TCPObservation"}]}');
INSERT INTO "evidence" VALUES(2,'{"verdict_evidence": {"throughput_bytes": 3145728, "throughput": {"address": "192.0.2.7", "trials": 3}}, "observations": []}');
INSERT INTO "evidence" VALUES(3,'{"verdict_evidence": {"answers": ["10.0.0.1"], "control": ["149.154.167.99"]}, "observations": []}');
INSERT INTO "evidence" VALUES(4,'{"verdict_evidence": {"throughput_bytes": 1048576, "throughput": {"address": "192.0.2.7"}}, "observations": []}');
INSERT INTO "evidence" VALUES(5,'{"verdict_evidence": {"throughput_bytes": 40000, "throughput": {"address": "192.0.2.9", "trials": 3}}, "observations": []}');
INSERT INTO "evidence" VALUES(6,'{"verdict_evidence": {"throughput_skipped": "the day''s budget is spent"}, "observations": []}');
INSERT INTO "evidence" VALUES(7,'{"verdict_evidence": {"throughput_bytes": 500000, "throughput": {"address": "198.51.100.4", "trials": 3}}, "observations": []}');
INSERT INTO "evidence" VALUES(8,'{"verdict_evidence": {"throughput_bytes": 7000, "throughput": {"address": "192.0.2.7", "trials": 3}}, "observations": []}');
CREATE TABLE measurements (
	id INTEGER NOT NULL, 
	run_id VARCHAR(32) NOT NULL, 
	service VARCHAR(128) NOT NULL, 
	category VARCHAR(32) NOT NULL, 
	input TEXT NOT NULL, 
	verdict VARCHAR(16) NOT NULL, 
	layer VARCHAR(8), 
	detail VARCHAR(32) NOT NULL, 
	rule VARCHAR(64) NOT NULL, 
	reason TEXT NOT NULL, 
	measured_at DATETIME NOT NULL, 
	duration_ms FLOAT NOT NULL, 
	throughput_kbps FLOAT, 
	baseline_kbps FLOAT, 
	PRIMARY KEY (id), 
	CONSTRAINT ck_measurements_verdict CHECK (verdict IN ('accessible', 'blocked', 'throttled', 'inconclusive')), 
	FOREIGN KEY(run_id) REFERENCES runs (run_id)
);
INSERT INTO "measurements" VALUES(1,'11111111111111111111111111111111','telegram','messaging','https://web.telegram.org/','accessible',NULL,'ok','all.ok','Every step succeeded.','2026-11-26 12:00:00.000000',123.5,NULL,NULL);
INSERT INTO "measurements" VALUES(2,'11111111111111111111111111111111','cdn','social','https://cdn.example.test/big.bin','accessible',NULL,'ok','throughput.not_slower','Not slower.','2026-11-26 12:00:00.000000',2500.0,8000.0,9000.0);
INSERT INTO "measurements" VALUES(3,'22222222222222222222222222222222','telegram','messaging','https://web.telegram.org/','blocked','dns','dns.bogon','dns.bogon','A private answer.','2026-11-29 10:00:00.000000',80.25,NULL,NULL);
INSERT INTO "measurements" VALUES(4,'22222222222222222222222222222222','cdn','social','https://cdn.example.test/big.bin','throttled','tls','throttle.sni','throttle.sni','Slow with the target SNI.','2026-11-29 10:00:00.000000',2500.0,120.0,9000.0);
INSERT INTO "measurements" VALUES(5,'22222222222222222222222222222222','cdn','social','https://video.example.test/clip.mp4','accessible',NULL,'ok','throughput.not_slower','Not slower.','2026-11-29 10:00:00.000000',2500.0,NULL,9000.0);
INSERT INTO "measurements" VALUES(6,'22222222222222222222222222222222','cdn','social','https://video.example.test/clip.mp4','accessible',NULL,'ok','http.ok','Fine.','2026-11-29 10:01:00.000000',300.0,NULL,NULL);
INSERT INTO "measurements" VALUES(7,'33333333333333333333333333333333','cdn','social','https://cdn.example.test/big.bin','accessible',NULL,'ok','throughput.not_slower','Not slower.','2026-11-29 11:00:00.000000',2500.0,5000.0,9000.0);
INSERT INTO "measurements" VALUES(8,'44444444444444444444444444444444','cdn','social','https://cdn.example.test/big.bin','accessible',NULL,'ok','throughput.not_slower','Not slower.','2026-11-29 11:30:00.000000',2500.0,6500.0,9000.0);
CREATE TABLE meta (
	"key" VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY ("key")
);
INSERT INTO "meta" VALUES('schema_version','2');
CREATE TABLE runs (
	run_id VARCHAR(32) NOT NULL, 
	started_at DATETIME NOT NULL, 
	finished_at DATETIME, 
	status VARCHAR(16) NOT NULL, 
	probe_version VARCHAR(64) NOT NULL, 
	vantage_name VARCHAR(128), 
	network_type VARCHAR(32), 
	asn BIGINT, 
	country VARCHAR(2), 
	settings JSON NOT NULL, 
	counts JSON, 
	PRIMARY KEY (run_id), 
	CONSTRAINT ck_runs_status CHECK (status IN ('running', 'completed', 'interrupted', 'timed_out', 'offline', 'failed', 'aborted'))
);
INSERT INTO "runs" VALUES('11111111111111111111111111111111','2026-11-26 12:00:00.000000','2026-11-26 12:00:00.000000','completed','0.1.0','home-almaty','home',9198,'KZ','{"resolver": "system", "doh": ["https://dns.example/dns-query"]}','{"accessible": 2}');
INSERT INTO "runs" VALUES('22222222222222222222222222222222','2026-11-29 10:00:00.000000','2026-11-29 12:00:00.000000','completed','0.1.0','home-almaty','home',9198,'KZ','{"resolver": "system", "doh": ["https://dns.example/dns-query"]}','{"accessible": 2, "blocked": 1, "throttled": 1}');
INSERT INTO "runs" VALUES('33333333333333333333333333333333','2026-11-29 11:00:00.000000','2026-11-29 12:00:00.000000','interrupted','0.1.0',NULL,NULL,NULL,NULL,'{"resolver": "system", "doh": ["https://dns.example/dns-query"]}','null');
INSERT INTO "runs" VALUES('44444444444444444444444444444444','2026-11-29 11:30:00.000000','2026-11-29 12:00:00.000000','failed','0.1.0','office',NULL,9198,'KZ','{"resolver": "system", "doh": ["https://dns.example/dns-query"]}','{}');
CREATE INDEX ix_measurements_measured_at ON measurements (measured_at);
CREATE INDEX ix_measurements_run_id ON measurements (run_id);
CREATE INDEX ix_measurements_service ON measurements (service);
CREATE INDEX ix_runs_started_at ON runs (started_at);
COMMIT;
