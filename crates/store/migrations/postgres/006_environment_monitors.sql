-- Version 6: environments watched once they deploy. A deployment names the URLs the server
-- is to watch; an environment's monitors are those of its last deployment that deployed.

CREATE TABLE IF NOT EXISTS deployment_monitors (
    deployment_id BIGINT NOT NULL,
    -- The monitor's name: repo/environment, with the host when there are several.
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    expect_status BIGINT NOT NULL,
    interval_ms BIGINT NOT NULL,
    PRIMARY KEY (deployment_id, name)
);
