// The supervisor console (see README, "Supervisor console").
document.getElementById("app").textContent = "fieldsync 计生信息管理";
