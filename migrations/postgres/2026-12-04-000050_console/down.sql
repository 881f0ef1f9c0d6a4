DROP INDEX device_enrolments_device;
DROP TABLE device_enrolments;
DROP INDEX person_merges_time;
DROP INDEX report_events_submission;
DROP TABLE report_events;
