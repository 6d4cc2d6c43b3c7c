-- Version 6: environments watched once they deploy. A deployment names the URLs the server
-- is to watch; an environment's monitors are those of its last deployment that deployed.

CREATE TABLE IF NOT EXISTS deployment_monitors (
    deployment_id INTEGER NOT NULL,
    -- The monitor's name: repo/environment, with the host when there are several.
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    expect_status INTEGER NOT NULL,
    interval_ms INTEGER NOT NULL,
    PRIMARY KEY (deployment_id, name)
);
