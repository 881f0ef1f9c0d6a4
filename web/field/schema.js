// The record types, fields, types, enumerations and Chinese labels of src/domain/entities.rs,
// for the field app's forms. The object after `SCHEMA =` is plain JSON: a Rust test
// (domain::entities::tests::field_app_schema_matches) fails when it drifts from the server's.

/** @type {{entities: {name: string, zh: string, fields: {name: string, zh: string, type: string, required: boolean, policy: string, max_len?: number, min?: number, max?: number, ref?: string, choices?: {value: string, zh: string}[]}[]}[]}} */
export const SCHEMA = {
 "entities": [
  {
   "name": "household",
   "zh": "家庭户",
   "fields": [
    {
     "name": "household_no",
     "zh": "户编号",
     "type": "text",
     "max_len": 100,
     "required": true,
     "policy": "review"
    },
    {
     "name": "address",
     "zh": "住址",
     "type": "text",
     "max_len": 200,
     "required": false,
     "policy": "latest"
    },
    {
     "name": "head_name",
     "zh": "户主姓名",
     "type": "text",
     "max_len": 50,
     "required": false,
     "policy": "review"
    },
    {
     "name": "phone",
     "zh": "联系电话",
     "type": "text",
     "max_len": 20,
     "required": false,
     "policy": "latest"
    },
    {
     "name": "one_child",
     "zh": "独生子女户",
     "type": "bool",
     "required": false,
     "policy": "review"
    },
    {
     "name": "two_daughters",
     "zh": "双女户",
     "type": "bool",
     "required": false,
     "policy": "review"
    },
    {
     "name": "notes",
     "zh": "备注",
     "type": "text",
     "max_len": 2000,
     "required": false,
     "policy": "latest"
    }
   ]
  },
  {
   "name": "person",
   "zh": "人员",
   "fields": [
    {
     "name": "household_id",
     "zh": "所属户",
     "type": "ref",
     "ref": "household",
     "required": false,
     "policy": "review"
    },
    {
     "name": "name",
     "zh": "姓名",
     "type": "text",
     "max_len": 50,
     "required": true,
     "policy": "review"
    },
    {
     "name": "sex",
     "zh": "性别",
     "type": "enum",
     "choices": [
      {
       "value": "male",
       "zh": "男"
      },
      {
       "value": "female",
       "zh": "女"
      }
     ],
     "required": true,
     "policy": "review"
    },
    {
     "name": "birth_date",
     "zh": "出生日期",
     "type": "date",
     "required": true,
     "policy": "review"
    },
    {
     "name": "id_number",
     "zh": "身份证号",
     "type": "resident_id",
     "required": false,
     "policy": "review"
    },
    {
     "name": "relation",
     "zh": "与户主关系",
     "type": "enum",
     "choices": [
      {
       "value": "head",
       "zh": "户主"
      },
      {
       "value": "spouse",
       "zh": "配偶"
      },
      {
       "value": "child",
       "zh": "子女"
      },
      {
       "value": "daughter_in_law",
       "zh": "儿媳"
      },
      {
       "value": "son_in_law",
       "zh": "女婿"
      },
      {
       "value": "grandchild",
       "zh": "孙子女"
      },
      {
       "value": "parent",
       "zh": "父母"
      },
      {
       "value": "parent_in_law",
       "zh": "公婆/岳父母"
      },
      {
       "value": "grandparent",
       "zh": "祖父母/外祖父母"
      },
      {
       "value": "sibling",
       "zh": "兄弟姐妹"
      },
      {
       "value": "sibling_in_law",
       "zh": "兄弟姐妹的配偶"
      },
      {
       "value": "other",
       "zh": "其他"
      }
     ],
     "required": false,
     "policy": "review"
    },
    {
     "name": "marital_status",
     "zh": "婚姻状况",
     "type": "enum",
     "choices": [
      {
       "value": "unmarried",
       "zh": "未婚"
      },
      {
       "value": "first_marriage",
       "zh": "初婚"
      },
      {
       "value": "remarried",
       "zh": "再婚"
      },
      {
       "value": "divorced",
       "zh": "离婚"
      },
      {
       "value": "widowed",
       "zh": "丧偶"
      }
     ],
     "required": false,
     "policy": "review"
    },
    {
     "name": "marriage_date",
     "zh": "婚姻变动日期",
     "type": "date",
     "required": false,
     "policy": "review"
    },
    {
     "name": "spouse_id",
     "zh": "配偶",
     "type": "ref",
     "ref": "person",
     "required": false,
     "policy": "review"
    },
    {
     "name": "residence",
     "zh": "户籍/居住状态",
     "type": "enum",
     "choices": [
      {
       "value": "resident",
       "zh": "常住"
      },
      {
       "value": "moved_out",
       "zh": "流出"
      },
      {
       "value": "moved_in",
       "zh": "流入"
      }
     ],
     "required": false,
     "policy": "review"
    },
    {
     "name": "alive",
     "zh": "存活",
     "type": "bool",
     "required": false,
     "policy": "review"
    },
    {
     "name": "phone",
     "zh": "联系电话",
     "type": "text",
     "max_len": 20,
     "required": false,
     "policy": "latest"
    },
    {
     "name": "notes",
     "zh": "备注",
     "type": "text",
     "max_len": 2000,
     "required": false,
     "policy": "latest"
    }
   ]
  },
  {
   "name": "pregnancy",
   "zh": "孕情",
   "fields": [
    {
     "name": "person_id",
     "zh": "孕妇",
     "type": "ref",
     "ref": "person",
     "required": true,
     "policy": "review"
    },
    {
     "name": "detected_on",
     "zh": "发现日期",
     "type": "date",
     "required": false,
     "policy": "review"
    },
    {
     "name": "expected_date",
     "zh": "预产期",
     "type": "date",
     "required": false,
     "policy": "review"
    },
    {
     "name": "parity",
     "zh": "孩次",
     "type": "int",
     "min": 1,
     "max": 20,
     "required": false,
     "policy": "review"
    },
    {
     "name": "within_policy",
     "zh": "符合政策",
     "type": "bool",
     "required": false,
     "policy": "review"
    },
    {
     "name": "certificate_no",
     "zh": "生育服务证号",
     "type": "text",
     "max_len": 100,
     "required": false,
     "policy": "review"
    },
    {
     "name": "status",
     "zh": "孕情状态",
     "type": "enum",
     "choices": [
      {
       "value": "ongoing",
       "zh": "孕中"
      },
      {
       "value": "ended",
       "zh": "已终止"
      }
     ],
     "required": true,
     "policy": "review"
    },
    {
     "name": "outcome",
     "zh": "孕情结果",
     "type": "enum",
     "choices": [
      {
       "value": "birth",
       "zh": "分娩"
      },
      {
       "value": "miscarriage",
       "zh": "自然流产"
      },
      {
       "value": "induced",
       "zh": "人工流产/引产"
      }
     ],
     "required": false,
     "policy": "review"
    },
    {
     "name": "outcome_date",
     "zh": "结果日期",
     "type": "date",
     "required": false,
     "policy": "review"
    },
    {
     "name": "notes",
     "zh": "备注",
     "type": "text",
     "max_len": 2000,
     "required": false,
     "policy": "latest"
    }
   ]
  },
  {
   "name": "birth",
   "zh": "出生",
   "fields": [
    {
     "name": "mother_id",
     "zh": "母亲",
     "type": "ref",
     "ref": "person",
     "required": true,
     "policy": "review"
    },
    {
     "name": "child_id",
     "zh": "婴儿",
     "type": "ref",
     "ref": "person",
     "required": false,
     "policy": "review"
    },
    {
     "name": "birth_date",
     "zh": "出生日期",
     "type": "date",
     "required": true,
     "policy": "review"
    },
    {
     "name": "sex",
     "zh": "婴儿性别",
     "type": "enum",
     "choices": [
      {
       "value": "male",
       "zh": "男"
      },
      {
       "value": "female",
       "zh": "女"
      }
     ],
     "required": true,
     "policy": "review"
    },
    {
     "name": "parity",
     "zh": "孩次",
     "type": "int",
     "min": 1,
     "max": 20,
     "required": true,
     "policy": "review"
    },
    {
     "name": "place",
     "zh": "出生地点",
     "type": "enum",
     "choices": [
      {
       "value": "hospital",
       "zh": "县级及以上医院"
      },
      {
       "value": "township_clinic",
       "zh": "乡镇卫生院"
      },
      {
       "value": "home",
       "zh": "家中"
      },
      {
       "value": "other",
       "zh": "其他"
      }
     ],
     "required": false,
     "policy": "review"
    },
    {
     "name": "within_policy",
     "zh": "符合政策",
     "type": "bool",
     "required": false,
     "policy": "review"
    },
    {
     "name": "notes",
     "zh": "备注",
     "type": "text",
     "max_len": 2000,
     "required": false,
     "policy": "latest"
    }
   ]
  },
  {
   "name": "death",
   "zh": "死亡",
   "fields": [
    {
     "name": "person_id",
     "zh": "死者",
     "type": "ref",
     "ref": "person",
     "required": true,
     "policy": "review"
    },
    {
     "name": "death_date",
     "zh": "死亡日期",
     "type": "date",
     "required": true,
     "policy": "review"
    },
    {
     "name": "cause",
     "zh": "死亡原因",
     "type": "text",
     "max_len": 100,
     "required": false,
     "policy": "review"
    },
    {
     "name": "notes",
     "zh": "备注",
     "type": "text",
     "max_len": 2000,
     "required": false,
     "policy": "latest"
    }
   ]
  },
  {
   "name": "measure",
   "zh": "节育措施",
   "fields": [
    {
     "name": "person_id",
     "zh": "对象",
     "type": "ref",
     "ref": "person",
     "required": true,
     "policy": "review"
    },
    {
     "name": "method",
     "zh": "节育措施",
     "type": "enum",
     "choices": [
      {
       "value": "iud_insertion",
       "zh": "上环"
      },
      {
       "value": "iud_removal",
       "zh": "取环"
      },
      {
       "value": "tubal_ligation",
       "zh": "女扎"
      },
      {
       "value": "vasectomy",
       "zh": "男扎"
      },
      {
       "value": "implant",
       "zh": "皮埋"
      },
      {
       "value": "pills",
       "zh": "口服药"
      },
      {
       "value": "condoms",
       "zh": "避孕套"
      },
      {
       "value": "injection",
       "zh": "注射"
      }
     ],
     "required": true,
     "policy": "review"
    },
    {
     "name": "started_on",
     "zh": "落实日期",
     "type": "date",
     "required": true,
     "policy": "review"
    },
    {
     "name": "ended_on",
     "zh": "终止日期",
     "type": "date",
     "required": false,
     "policy": "review"
    },
    {
     "name": "provider",
     "zh": "手术/服务单位",
     "type": "text",
     "max_len": 100,
     "required": false,
     "policy": "review"
    },
    {
     "name": "notes",
     "zh": "备注",
     "type": "text",
     "max_len": 2000,
     "required": false,
     "policy": "latest"
    }
   ]
  },
  {
   "name": "visit",
   "zh": "随访",
   "fields": [
    {
     "name": "person_id",
     "zh": "对象",
     "type": "ref",
     "ref": "person",
     "required": true,
     "policy": "review"
    },
    {
     "name": "kind",
     "zh": "随访类别",
     "type": "enum",
     "choices": [
      {
       "value": "iud_check",
       "zh": "查环"
      },
      {
       "value": "pregnancy_check",
       "zh": "查孕"
      },
      {
       "value": "disease_check",
       "zh": "查病"
      },
      {
       "value": "post_operation",
       "zh": "术后随访"
      },
      {
       "value": "postpartum",
       "zh": "产后随访"
      },
      {
       "value": "contraceptive",
       "zh": "避孕随访"
      }
     ],
     "required": true,
     "policy": "review"
    },
    {
     "name": "due_date",
     "zh": "应随访日期",
     "type": "date",
     "required": false,
     "policy": "review"
    },
    {
     "name": "visit_date",
     "zh": "随访日期",
     "type": "date",
     "required": false,
     "policy": "review"
    },
    {
     "name": "findings",
     "zh": "随访情况",
     "type": "text",
     "max_len": 2000,
     "required": false,
     "policy": "review"
    },
    {
     "name": "next_due",
     "zh": "下次随访日期",
     "type": "date",
     "required": false,
     "policy": "review"
    },
    {
     "name": "notes",
     "zh": "备注",
     "type": "text",
     "max_len": 2000,
     "required": false,
     "policy": "latest"
    }
   ]
  },
  {
   "name": "migration",
   "zh": "流动人口登记",
   "fields": [
    {
     "name": "person_id",
     "zh": "流动人员",
     "type": "ref",
     "ref": "person",
     "required": true,
     "policy": "review"
    },
    {
     "name": "direction",
     "zh": "流向",
     "type": "enum",
     "choices": [
      {
       "value": "out",
       "zh": "流出"
      },
      {
       "value": "in",
       "zh": "流入"
      }
     ],
     "required": true,
     "policy": "review"
    },
    {
     "name": "place",
     "zh": "流动范围",
     "type": "enum",
     "choices": [
      {
       "value": "within_province",
       "zh": "省内"
      },
      {
       "value": "outside_province",
       "zh": "省外"
      }
     ],
     "required": false,
     "policy": "review"
    },
    {
     "name": "moved_on",
     "zh": "流出/流入日期",
     "type": "date",
     "required": true,
     "policy": "review"
    },
    {
     "name": "certificate_no",
     "zh": "婚育证明号",
     "type": "text",
     "max_len": 100,
     "required": false,
     "policy": "review"
    },
    {
     "name": "certificate_checked",
     "zh": "已查证",
     "type": "bool",
     "required": false,
     "policy": "review"
    },
    {
     "name": "notes",
     "zh": "备注",
     "type": "text",
     "max_len": 2000,
     "required": false,
     "policy": "latest"
    }
   ]
  },
  {
   "name": "supply",
   "zh": "药具发放",
   "fields": [
    {
     "name": "person_id",
     "zh": "领取人",
     "type": "ref",
     "ref": "person",
     "required": true,
     "policy": "review"
    },
    {
     "name": "item",
     "zh": "药具",
     "type": "enum",
     "choices": [
      {
       "value": "condoms",
       "zh": "避孕套(只)"
      },
      {
       "value": "film",
       "zh": "避孕药膜(本)"
      },
      {
       "value": "pills",
       "zh": "短效口服药(板)"
      }
     ],
     "required": true,
     "policy": "review"
    },
    {
     "name": "quantity",
     "zh": "数量",
     "type": "int",
     "min": 1,
     "max": 10000,
     "required": true,
     "policy": "review"
    },
    {
     "name": "handed_on",
     "zh": "发放日期",
     "type": "date",
     "required": true,
     "policy": "review"
    }
   ]
  },
  {
   "name": "benefit",
   "zh": "奖励扶助",
   "fields": [
    {
     "name": "person_id",
     "zh": "对象",
     "type": "ref",
     "ref": "person",
     "required": false,
     "policy": "review"
    },
    {
     "name": "household_id",
     "zh": "所属户",
     "type": "ref",
     "ref": "household",
     "required": false,
     "policy": "review"
    },
    {
     "name": "kind",
     "zh": "奖扶类别",
     "type": "enum",
     "choices": [
      {
       "value": "one_child_certificate",
       "zh": "独生子女父母光荣证"
      },
      {
       "value": "reward_assistance",
       "zh": "奖励扶助"
      },
      {
       "value": "special_assistance",
       "zh": "特别扶助"
      }
     ],
     "required": true,
     "policy": "review"
    },
    {
     "name": "year",
     "zh": "年度",
     "type": "int",
     "min": 1980,
     "max": 2100,
     "required": true,
     "policy": "review"
    },
    {
     "name": "amount_yuan",
     "zh": "金额(元)",
     "type": "int",
     "min": 0,
     "max": 1000000,
     "required": false,
     "policy": "review"
    }
   ]
  }
 ]
};
