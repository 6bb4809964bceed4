//! `GET /`: the live status page, served from the binary (HTML, script and style compiled in;
//! no CDN, works offline). The script polls the `/v1` JSON routes about once a second; with
//! tokens configured it sends the one given in the page's fragment (`/#token=...`).

use actix_web::{web, HttpResponse};

const HTML: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/page.js", web::get().to(script))
        .route("/page.css", web::get().to(style));
}

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(HTML)
}

async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(SCRIPT)
}

async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(STYLE)
}
