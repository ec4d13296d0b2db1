"""Running a sweep: folder and driver, Ray dispatch, trial task, StudyServer."""
