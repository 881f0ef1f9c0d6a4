// The field app for village officers (see README, "Field app").
document.getElementById("app").textContent = "fieldsync 村级采集";
